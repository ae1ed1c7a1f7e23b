from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_mcp_trust"),
    ]

    operations = [
        migrations.AddField(
            model_name="room",
            name="packs",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text='Tool packs this room\'s agent may use (e.g. ["linear", '
                '"mcp:notes"]); empty allows every pack configured.',
            ),
        ),
    ]

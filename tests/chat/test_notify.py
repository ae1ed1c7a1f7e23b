"""Email to approvers, through a real SMTP server (aiosmtpd in this process): when an
action becomes pending, and once more at half its timeout (the sweep)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from chat import services
from chat.links import decide_url
from chat.models import Action, Delivery, Membership, User
from tasks.tasks import deliver as deliver_task
from tests.chat.test_api import (  # noqa: F401  (autouse fixtures apply here too)
    fast_password_hashing,
    forget_throttle_counts,
    pending_action,
)


def _becomes_pending(room, bob, capture) -> Action:
    with capture(execute=False), transaction.atomic():
        action = pending_action(room, bob)
        # As the agent's step announces it: the room event, then the outbox rows.
        services.action_notify(action, services.action_emit(action))
    return action


def _send_all() -> None:
    for pk in Delivery.objects.filter(status="pending").values_list("pk", flat=True):
        deliver_task.apply(args=[str(pk)])


def test_each_eligible_voter_with_an_address_gets_a_mail(
    room, alice, bob, smtp, django_capture_on_commit_callbacks
):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com")
    User.objects.filter(pk=bob.pk).update(email="bob@example.com")
    carol = User.objects.create(username="carol")  # an approver without an address
    services.member_add(
        room=room, actor=alice, username="carol", role=Membership.Role.APPROVER
    )
    assert carol.email == ""
    action = _becomes_pending(room, bob, django_capture_on_commit_callbacks)

    _send_all()

    [mail] = smtp.mails
    assert mail.rcpt_tos == ["alice@example.com"]
    text = mail.content.decode()
    for needle in ("Triage", "delete_issue", "Flaky login", '"id": "ENG-3"'):
        assert needle in text
    assert decide_url(action) in text.replace("=\r\n", "")
    assert Delivery.objects.get().status == "sent"


def test_a_mail_server_that_is_down_is_retried(
    room, alice, bob, settings, django_capture_on_commit_callbacks
):
    from stack.procs import free_port

    User.objects.filter(pk=alice.pk).update(email="alice@example.com")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.DELIVERY_RETRY_BASE, settings.DELIVERY_MAX_ATTEMPTS = 0.01, 2
    _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    _send_all()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert "SMTP" in delivery.last_error


def test_the_sweep_reminds_at_half_the_timeout_once(
    room, alice, bob, smtp, django_capture_on_commit_callbacks
):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com")
    action = _becomes_pending(room, bob, django_capture_on_commit_callbacks)
    now = timezone.now()
    Action.objects.filter(pk=action.pk).update(
        created=now - timedelta(hours=2), expires_at=now + timedelta(hours=3)
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert services.sweep()["reminded"] == 0
    Action.objects.filter(pk=action.pk).update(expires_at=now + timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False):
        assert services.sweep()["reminded"] == 1
        assert services.sweep()["reminded"] == 0
    action.refresh_from_db()
    assert action.reminded_at is not None

    _send_all()

    subjects = sorted(
        m.content.decode().split("Subject: ")[1].split("\n")[0] for m in smtp.mails
    )
    assert len(subjects) == 2 and subjects[0].startswith("Reminder: ")

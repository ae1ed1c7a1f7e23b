"""What `make run` says once it started, and where its links lead: the port it
serves unless SITE_URL says otherwise."""

from stack.runner import STANDINS, banner, site_url


def test_the_links_follow_the_port_served_unless_site_url_is_set():
    assert site_url({}, 8123) == "http://127.0.0.1:8123"
    assert site_url({"SITE_URL": "  "}, 8123) == "http://127.0.0.1:8123"
    assert site_url({"SITE_URL": "https://agents.example.com"}, 8123) == (
        "https://agents.example.com"
    )


def test_the_banner_names_every_login_and_every_standin_with_its_address():
    used = [(s, f"http://127.0.0.1:{s.port}/x") for s in STANDINS]
    env = {"SITE_URL": "http://127.0.0.1:8123"}
    text = "\n".join(banner(8123, env, used, "redis://127.0.0.1:6379/0"))
    assert "http://127.0.0.1:8123/" in text
    for login in ("demo (staff", "alice and carol (approvers)", "bob (member)"):
        assert login in text
    for label, port in (("OpenAI", 8001), ("Linear", 8002), ("GitHub", 8003)):
        assert f"{label:<8} http://127.0.0.1:{port}/x" in text
    assert "MCP      http://127.0.0.1:8004/x (a notes server" in text
    assert "printed below by the worker, each with its decision link" in text


def test_with_every_key_set_the_banner_says_demo_mode_is_off_and_where_mail_goes():
    env = {"SITE_URL": "https://agents.example.com", "EMAIL_HOST": "smtp.example.com"}
    text = "\n".join(banner(8000, env, [], "redis://127.0.0.1:6379/0"))
    assert "demo mode   off" in text
    assert "links       https://agents.example.com" in text
    assert "sent to smtp.example.com (EMAIL_HOST)" in text

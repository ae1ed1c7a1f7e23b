"""The Django admin: where staff decide pending actions and look at everything else.

Nothing here writes around the services: a decision goes through
`services.action_decide(..., via=Action.Via.ADMIN)`, like the room's buttons and the
API, so the rules (who may decide, the first decision wins) and the room's events are
the same whichever interface was used. Actions, requests, messages and events come
from the agent: the admin shows them read-only and never adds them.

Everything that came from the model or from Linear (arguments, issue titles,
messages) is untrusted: it reaches HTML only through autoescaping or `format_html`.
"""

from . import (  # noqa: F401 - registers the admins
    actions,
    audit,
    outbox,
    packs,
    records,
    schedules,
    triggers,
)
from .common import action_summary

__all__ = ["action_summary"]

"""The one way a service takes a request's row lock.

Lock order, to keep PostgreSQL free of deadlocks: the request row (here), then
its action rows, then the room row (taken last, by `chat.realtime.event_emit`). Every
write of a request, its actions or its messages happens with this lock held, so two
writers of one turn (a worker and a vote, a cancel and a claim) take turns.
"""

from uuid import UUID

from django.db import transaction

from chat.models import Action, Request

from .access import id_or_none


def request_lock(
    *, request_id: UUID | str | None = None, action_id: UUID | str | None = None
) -> Request | None:
    """Lock the request (given itself or one of its actions) and return it, or None.

    Must run inside `transaction.atomic()`. Only the request's own row is locked;
    its room comes with it, read in the same query, so no query follows the commit.
    """
    assert transaction.get_connection().in_atomic_block, "request_lock needs atomic()"
    # NO KEY: the id never changes, and inserts of the request's messages and actions
    # (KEY SHARE on it) by the lock holder's peers must not queue behind us.
    rows = Request.objects.select_for_update(of=("self",), no_key=True).select_related(
        "room"
    )
    if action_id is not None:
        rows = rows.filter(actions=id_or_none(action_id))
    else:
        # pk=None (a malformed id) matches no row; the stubs refuse None.
        rows = rows.filter(pk=id_or_none(request_id))  # type: ignore[misc]
    return rows.first()


def action_lock(*, action_id: UUID | str) -> tuple[Request, Action] | None:
    """Lock an action's request, then read the action as earlier writers left it."""
    request = request_lock(action_id=action_id)
    if request is None:
        return None
    action = Action.objects.select_related("room", "decided_by").get(pk=action_id)
    action.request = request  # its requester, for the ballots, without a query
    return request, action

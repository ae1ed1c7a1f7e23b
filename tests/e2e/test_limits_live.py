"""The contract's "Limits" across real web processes: sockets per user are counted
over every process, and a process killed with its sockets open gives their slots
back on its own."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.test_hostile_ws import Client, outcome, refused
from tests.plugins.people import token_for

pytestmark = pytest.mark.e2e

CAP, TTL = 4, 3


def test_socket_slots_count_over_every_process_and_a_killed_ones_are_freed(
    stack, room, bob
):
    """bob holds CAP sockets, half on each of two web processes: one more is refused
    on either, also after the slots' TTL (each live process renews its own). Once one
    process is SIGKILLed (no close, no cleanup), its sockets stop counting within the
    TTL and bob gets in again, up to the cap."""
    stack.env.update(WS_MAX_SOCKETS_PER_USER=str(CAP), WS_SOCKET_TTL_SECONDS=str(TTL))
    doomed = stack.web("web-doomed")
    doomed_proc = stack.procs[-1]
    live = stack.web("web-live")
    token = token_for(bob)

    async def scenario() -> dict:
        held = [await Client.connect(live, token) for _ in range(CAP // 2)]
        held += [await Client.connect(doomed, token) for _ in range(CAP // 2)]
        seen = {"full": await outcome(live, token=token)}
        seen["full elsewhere"] = await outcome(doomed, token=token)
        await asyncio.sleep(TTL + 2)
        seen["full after the ttl"] = await outcome(live, token=token)

        doomed_proc.kill()
        started, seen["freed"] = time.monotonic(), None
        while time.monotonic() - started < TTL + 5:
            answer = await outcome(live, token=token)
            if answer[0] == "accepted":
                seen["freed"] = (answer, round(time.monotonic() - started, 1))
                break
            await asyncio.sleep(0.3)
        # The live process's sockets still count: room for CAP // 2 more only.
        held += [await Client.connect(live, token) for _ in range(CAP // 2)]
        seen["full again"] = await outcome(live, token=token)
        for client in held[: CAP // 2] + held[CAP:]:
            await client.ws.close()
        return seen

    seen = asyncio.run(scenario())
    for name in ("full", "full elsewhere", "full after the ttl", "full again"):
        assert seen[name] in refused(4429), seen
    assert seen["freed"] is not None, seen
    assert seen["freed"][0] == ("accepted", "snapshot")
    assert seen["freed"][1] <= TTL + 1, seen

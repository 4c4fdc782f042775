"""IngressLock: the ingress processes of one machine take turns; a waiter that gives up
(cancelled) leaves nothing held; a holder that dies frees it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from persistence.lock import IngressLock

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_another_process_holding_it_makes_this_one_wait_until_it_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "hub-control.lock"
    holder = _holder(path)

    async def scenario() -> list[str]:
        order: list[str] = []

        async def take() -> None:
            async with IngressLock(path).held():
                order.append("taken")

        taking = asyncio.ensure_future(take())
        await asyncio.sleep(0.2)
        order.append("still waiting" if not taking.done() else "taken too early")
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        await asyncio.wait_for(taking, 10)
        return order

    try:
        assert asyncio.run(scenario()) == ["still waiting", "taken"]
    finally:
        holder.kill()
        holder.wait()


def test_a_cancelled_waiter_leaves_it_free_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    path = tmp_path / "hub-control.lock"
    holder = _holder(path)

    async def scenario() -> None:
        lock = IngressLock(path)

        async def take() -> None:
            async with lock.held():
                await asyncio.sleep(0)

        waiting = asyncio.ensure_future(take())
        await asyncio.sleep(0.05)
        waiting.cancel()
        holder.kill()  # kill -9: the kernel drops its flock
        holder.wait()
        await asyncio.wait_for(take(), 10)  # neither the cancelled waiter nor the dead holds it

    asyncio.run(scenario())

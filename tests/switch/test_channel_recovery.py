"""A shard that stops answering: its channel probes it, one probe at a time, refuses new work
at once (503) while it recovers, and serves again when a probe answers. Also when its calls
are held rather than failed (the Ray transport, to a restarting actor)."""

from __future__ import annotations

import asyncio

import pytest

from actors.messages import GetAccount
from switch.routing import channel as channel_module
from switch.routing.channel import ShardChannel, ShardUnavailable


class DeadShard:
    """Calls fail (`held`: wait until it is back, then fail); probes wait until it is back."""

    def __init__(self, held: bool) -> None:
        self.held = held
        self.back = asyncio.Event()
        self.probes = 0

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        if self.held:
            await self.back.wait()
        raise ConnectionError("the shard's process is gone")

    async def status(self) -> object:
        self.probes += 1
        await self.back.wait()
        return "serving"


@pytest.mark.parametrize("held", [False, True])
def test_a_dead_shard_is_refused_at_once_probed_once_and_served_again(
        monkeypatch: pytest.MonkeyPatch, held: bool) -> None:
    monkeypatch.setattr(channel_module, "PROBE_GRACE_S", 0.05)
    monkeypatch.setattr(channel_module, "SLOW_CALL_S", 0.1)

    async def scenario() -> None:
        shard = DeadShard(held)
        channel = ShardChannel(0, shard.call, 100, 10, shard.status)
        first = channel.submit([GetAccount("a")])
        await asyncio.sleep(0.5)
        assert channel.recovering_since_s is not None
        with pytest.raises(ShardUnavailable, match="recovering"):
            channel.submit([GetAccount("b")])  # at once, not behind the restart
        assert shard.probes == 1  # held probes do not pile up
        shard.back.set()
        with pytest.raises(ShardUnavailable):
            await first
        await asyncio.sleep(0.05)
        assert channel.recovering_since_s is None

    asyncio.run(scenario())

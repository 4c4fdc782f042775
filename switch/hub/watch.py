"""Watching the switch layer: each participant's position against its net debit cap, the
alarm when it crosses its threshold (set per participant and ledger with its cap, else
`hub.alarm_percent`), and each ledger's open window; read by the dashboard and /metrics,
polled like the shards (monitor.interval_ms). A crossing upwards is recorded as an
`ndc_alarm` event in the registry's log (on /v1/events for the participant and the
operator) by one ingress process (the only one, or worker 0); every ingress counts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from switch.hub.model import Position
from switch.hub.service import Hub
from switch.hub.window_model import window_id
from switch.hub.windows import Windows

log = logging.getLogger("payswitch.hub")
WATCHED_MAX = 200  # participant-ledger pairs polled: the dashboard shows a bounded table


class HubWatch:
    def __init__(self, hub: Hub, windows: Windows, interval_ms: int,
                 records_alarms: bool = True) -> None:
        self.hub = hub
        self.windows = windows
        self.interval_s = interval_ms / 1000
        self.records_alarms = records_alarms
        self.positions: list[dict[str, Any]] = []
        self.open_windows: list[dict[str, Any]] = []
        self.truncated = False
        # Hears each crossing (participant, ledger): the metrics' count.
        self.on_alarm: Callable[[str, str], None] | None = None
        self._alarmed: set[tuple[str, str]] = set()

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:  # a shard restarting: try again next time
                log.warning("the switch layer's watch could not read: %s", error)
            await asyncio.sleep(self.interval_s)

    async def tick(self) -> None:
        pairs = sorted((p.id, ledger) for p in self.hub.keyring.participants.values()
                       for ledger in p.ledgers)
        self.truncated = len(pairs) > WATCHED_MAX
        positions = []
        for participant, ledger in pairs[:WATCHED_MAX]:
            standing = await self.hub.position(participant, ledger)
            used = 100 * standing.position / standing.net_debit_cap \
                if standing.net_debit_cap else 0.0
            alarm = standing.net_debit_cap > 0 and used >= standing.alarm_percent
            await self._note_alarm(participant, standing, alarm, used)
            positions.append({"participant_id": participant, "ledger": ledger,
                              "position": standing.position,
                              "net_debit_cap": standing.net_debit_cap,
                              "headroom": standing.headroom,
                              "settlement_balance": standing.settlement_balance,
                              "used_percent": round(used, 1), "alarm": alarm,
                              "alarm_percent": standing.alarm_percent})
        self.positions = positions
        ledgers = sorted({ledger for _, ledger in pairs})
        self.open_windows = [{"ledger": ledger,
                              "open": window_id(ledger, await self.windows.open_window(ledger))}
                             for ledger in ledgers]

    async def _note_alarm(self, participant: str, standing: Position, alarm: bool,
                          used: float) -> None:
        """Crossing the threshold upwards: a log line, a count, and (in the ingress that
        records them) an `ndc_alarm` event. A restart forgets what was seen: a position
        still above its threshold then raises the alarm once more."""
        key = (participant, standing.ledger)
        if alarm and key not in self._alarmed:
            if self.records_alarms:
                await self.hub.record_alarm(standing, participant)  # raises: tried next tick
            self._alarmed.add(key)
            if self.on_alarm is not None:
                self.on_alarm(participant, standing.ledger)
            log.warning("ndc_alarm: %s on %s uses %.1f%% of its net debit cap (alarm at %d%%)",
                        participant, standing.ledger, used, standing.alarm_percent)
        elif not alarm:
            self._alarmed.discard(key)

    def data(self) -> dict[str, Any]:
        return {"positions": self.positions, "windows": self.open_windows,
                "positions_truncated": self.truncated,
                "alarm_percent": self.hub.alarm_percent_default}


class HubCollector(Collector):
    """/metrics: positions, caps and alarms, as last polled."""

    def __init__(self, watch: HubWatch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Any]:
        labels = ["participant", "ledger"]
        position = GaugeMetricFamily("payswitch_participant_position", "Net position in the "
                                     "open windows (minor units)", labels=labels)
        cap = GaugeMetricFamily("payswitch_participant_net_debit_cap",
                                "Net debit cap (minor units)", labels=labels)
        for row in self.watch.positions:
            key = [row["participant_id"], row["ledger"]]
            position.add_metric(key, row["position"])
            cap.add_metric(key, row["net_debit_cap"])
        yield position
        yield cap

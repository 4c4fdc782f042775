"""Settlements: closed windows settled between the participants (docs/SWITCH.md).

A settlement names closed windows of one ledger. Creating it is one linked chain of
transfers: a record (`hub:settlement:S`, the windows in user_data) and a claim per window
(`hub:settle-claim:L:N`, the settlement in user_data). The claims' ids make a window part of
one settlement only, whatever runs at once. Each participant's net over those windows is
then settled, when the operator acknowledges it, by one chain:

- a debtor (net N > 0) pays N from its settlement account into the hub's multilateral
  account, and its position goes down by N (its headroom up); its cap comes down if it would
  exceed what the settlement account has left;
- a creditor (net -M) is paid M from the multilateral account, which holds only what debtors
  paid in (a creditor settled before its debtors is refused), and its position goes up by M
  (its headroom down). If it has already used that headroom (it sent more since), its cap
  rises by what is missing, backed by the M it receives: its position may then stand at its
  cap, as Mojaloop lets a position pass its NDC after a settlement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.ledger.model import Account, Transfer
from actors.messages import GetTransfer, TransferView, expect
from switch.api.errors import ApiError
from switch.hub.model import (
    cap_id,
    chained,
    multilateral_id,
    position_id,
    resets_id,
    settlement_id,
)
from switch.hub.service import Hub, result_of
from switch.hub.window_model import sink_id, window_id
from switch.hub.windows import Windows

SETTLEMENT_CODE, CLAIM_CODE, SETTLE_FUNDS_CODE, SETTLE_CAP_CODE, SETTLE_POSITION_CODE = (
    9111, 9112, 9113, 9114, 9115)
CLAIMS_ACCOUNT_CODE = 9034
USER_DATA_MAX = 128
TRIES = 3


def claims_id(ledger: str) -> str:
    return f"hub:settlements:{ledger}"


@dataclass(frozen=True)
class Net:
    participant_id: str
    net: int  # positive: it pays; negative: it receives
    settled: bool


@dataclass(frozen=True)
class Settlement:
    id: str
    ledger: str
    windows: list[int]
    nets: list[Net]

    @property
    def state(self) -> str:
        return "settled" if all(n.settled for n in self.nets) else "pending"


class Settlements:
    def __init__(self, hub: Hub, windows: Windows) -> None:
        self.hub = hub
        self.windows = windows

    async def create(self, settlement: str, ledger: str, numbers: list[int], key_id: str
                     ) -> str:
        listed = ",".join(str(n) for n in sorted(set(numbers)))
        if len(f"{ledger}:{listed}") > USER_DATA_MAX:
            raise ApiError(400, "too_many_windows")
        for number in numbers:
            if (await self.windows.report(ledger, number)).state != "closed":
                raise ApiError(422, "window_open")
        await self.hub.router.create_accounts(self._claims_accounts(ledger), key_id=key_id)
        record = Transfer(f"hub:settlement:{settlement}", sink_id(ledger), claims_id(ledger), 1,
                          ledger, SETTLEMENT_CODE, f"{ledger}:{listed}", 0, "", 0, 0, key_id,
                          "")
        claims = [Transfer(f"hub:settle-claim:{ledger}:{n}", sink_id(ledger), claims_id(ledger),
                           1, ledger, CLAIM_CODE, settlement, 0, "", 0, 0, key_id, "")
                  for n in sorted(set(numbers))]
        legs = chained([record, *claims])
        results = [result_of(o) for o in await self.hub.router.create_transfers(legs)]
        if all(r == "exists" for r in results):
            return "exists"
        if results[0].startswith("exists_with_different_"):
            return "exists_with_different_windows"
        if any(r.startswith("exists") for r in results[1:]):
            return "window_in_other_settlement"
        failed = [r for r in results if r not in ("ok", "linked_event_failed")]
        return failed[0] if failed else "ok"

    def _claims_accounts(self, ledger: str) -> list[Account]:
        return [Account(claims_id(ledger), ledger, CLAIMS_ACCOUNT_CODE, "hub:switch", 0, "")]

    async def get(self, settlement: str) -> Settlement | None:
        record = await self._transfer(f"hub:settlement:{settlement}")
        if record is None:
            return None
        ledger, _, listed = record.user_data.partition(":")
        numbers = [int(n) for n in listed.split(",")]
        totals: dict[str, int] = {}
        for number in numbers:
            for row in (await self.windows.report(ledger, number)).rows:
                totals[row.participant_id] = totals.get(row.participant_id, 0) + row.net
        nets = [Net(p, net, net == 0 or await self._transfer(
            _leg(settlement, p, "funds")) is not None) for p, net in sorted(totals.items())]
        return Settlement(settlement, ledger, numbers, nets)

    async def settle(self, settlement: str, participant_id: str, key_id: str) -> str:
        """Settle one participant's net: "ok", "exists" (done before), or why not."""
        found = await self.get(settlement)
        if found is None:
            raise ApiError(404, "settlement_not_found")
        net = next((n for n in found.nets if n.participant_id == participant_id), None)
        if net is None:
            raise ApiError(404, "participant_not_found")
        if net.settled:
            return "exists"
        async with self.hub.control_lock.held():  # it reads the cap, as a cap change does
            return await self._settle_net(settlement, found.ledger, participant_id, net.net,
                                          key_id)

    async def _settle_net(self, settlement: str, ledger: str, participant_id: str, net: int,
                          key_id: str) -> str:
        for _ in range(TRIES):  # payments may move its headroom while this is sent
            legs = await self._legs(settlement, ledger, participant_id, net, key_id)
            results = [result_of(o) for o in await self.hub.router.create_transfers(legs)]
            if all(r == "ok" for r in results) or all(r == "exists" for r in results):
                return "ok"
            leg, failed = next((leg, r) for leg, r in zip(legs, results, strict=True)
                               if r not in ("ok", "linked_event_failed"))
            if failed == "exceeds_credits" and leg.code == SETTLE_FUNDS_CODE:
                raise ApiError(422, "settlement_insufficient_funds" if net > 0
                               else "settlement_debtors_pending")
            if failed != "exceeds_credits":
                return failed
        raise ApiError(503, "in_flight", retry_after_seconds=1)

    async def _legs(self, settlement: str, ledger: str, participant: str, net: int,
                    key_id: str) -> list[Transfer]:
        """A debtor pays its net into the hub's multilateral account (which pays creditors
        only what debtors paid in) and gets that headroom back; its cap comes down with its
        settlement balance. A creditor is paid from the multilateral account and gives the
        headroom back; its cap rises by any headroom it had already spent."""
        position, funds = position_id(ledger, participant), settlement_id(ledger, participant)
        hub, resets = multilateral_id(ledger), resets_id(ledger)
        standing = await self.hub.position(participant, ledger)

        def leg(name: str, debit: str, credit: str, amount: int, code: int) -> Transfer:
            return Transfer(_leg(settlement, participant, name), debit, credit, amount, ledger,
                            code, settlement, 0, "", 0, 0, key_id, "")

        if net > 0:
            legs = [leg("funds", funds, hub, net, SETTLE_FUNDS_CODE),
                    leg("position", resets, position, net, SETTLE_POSITION_CODE)]
            over = standing.net_debit_cap - (standing.settlement_balance - net)
            if over > 0:  # its cap stays within what it has left
                legs.append(leg("cap", position, cap_id(ledger, participant), over,
                                SETTLE_CAP_CODE))
            return chained(legs)
        owed = -net
        legs = [leg("funds", hub, funds, owed, SETTLE_FUNDS_CODE)]
        if standing.headroom < owed:
            legs.append(leg("cap", cap_id(ledger, participant), position,
                            owed - standing.headroom, SETTLE_CAP_CODE))
        legs.append(leg("position", position, resets, owed, SETTLE_POSITION_CODE))
        return chained(legs)

    async def _transfer(self, transfer_id: str) -> Transfer | None:
        view = await self.hub.router.ask(self.hub.router.shard_of(transfer_id),
                                         GetTransfer(transfer_id))
        return expect(view, TransferView).transfer


def _leg(settlement: str, participant: str, name: str) -> str:
    """`|` is in no public id: settlement `s:x` of participant `y` is not `s` of `x:y`."""
    return f"hub:settle:{settlement}|{participant}|{name}"


def settlement_json(found: Settlement, participant_id: str | None = None) -> dict[str, Any]:
    """`participant_id`: a participant's view (its row only); None: every row."""
    return {"id": found.id, "ledger": found.ledger,
            "window_ids": [window_id(found.ledger, n) for n in found.windows],
            "state": found.state,
            "participants": [{"participant_id": n.participant_id, "net": n.net,
                              "state": "settled" if n.settled else "pending"}
                             for n in found.nets
                             if participant_id in (None, n.participant_id)]}

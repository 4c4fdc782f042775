"""The switch layer against a real switch (3 shards): participants' positions under net debit
caps, funds in and out, immediate payments between participants (docs/SWITCH.md)."""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import orjson

from switch.hub.model import Payment, payment_legs, payment_result
from switch.hub.quotes import seal, unseal
from tests.conftest import assert_balanced
from tests.switch.hub_world import USD, Switch, _ids, fresh


def test_a_new_participant_stands_at_zero(hub: Switch) -> None:
    bank = hub.participant()
    assert hub.position(bank) == {"ledger": USD, "position": 0, "net_debit_cap": 0,
                                  "headroom": 0, "settlement_balance": 0, "alarm_percent": 80}


def test_funds_in_and_out(hub: Switch) -> None:
    bank = hub.participant()
    first = hub.funds(bank, 1_000, funds_id="f1-" + bank)
    assert first.status_code == 201 and first.json()["position"]["settlement_balance"] == 1_000
    assert hub.funds(bank, 1_000, funds_id="f1-" + bank).json()["result"] == "exists"
    assert hub.funds(bank, 999, funds_id="f1-" + bank).status_code == 409
    assert hub.funds(bank, 1_001, "out").json()["code"] == "settlement_below_position"
    out = hub.funds(bank, 400, "out", funds_id="o1-" + bank)
    assert out.status_code == 201, out.text
    again = hub.funds(bank, 400, "out", funds_id="o1-" + bank)  # a retry: as sent, not re-checked
    assert again.status_code == 200 and again.json()["result"] == "exists"
    assert hub.position(bank)["settlement_balance"] == 600


def test_a_cap_is_at_most_the_settlement_balance(hub: Switch) -> None:
    bank = hub.participant()
    assert hub.funds(bank, 500).status_code == 201
    assert hub.cap(bank, 501).json()["code"] == "net_debit_cap_above_settlement"
    set_ = hub.cap(bank, 500)
    assert set_.status_code == 200 and set_.json()["position"]["headroom"] == 500
    assert hub.cap(bank, 500).json()["result"] == "unchanged"
    assert hub.cap(bank, 200).json()["position"] == {
        "ledger": USD, "position": 0, "net_debit_cap": 200, "headroom": 200,
        "settlement_balance": 500, "alarm_percent": 80}


def test_a_payment_moves_wallets_and_positions(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    alice, bob = hub.wallet(payer, 300), hub.wallet(payee)
    paid = hub.pay(alice, bob, 120, payer=payer)
    assert paid.status_code == 201, paid.text
    payment = paid.json()["payment"]
    assert (payment["payer_participant_id"], payment["payee_participant_id"],
            payment["state"]) == (payer, payee, "committed")
    assert (hub.balance(alice), hub.balance(bob)) == (180, 120)
    assert hub.position(payer)["position"] == 120
    assert hub.position(payer)["headroom"] == 880
    assert hub.position(payee)["position"] == -120
    # both participants see it; a third does not
    third = hub.participant()
    path = f"/v1/payments/{payment['id']}"
    assert hub.as_(payer, "GET", path).json() == payment
    assert hub.as_(payee, "GET", path).status_code == 200
    assert hub.as_(third, "GET", path).status_code == 404


def test_the_cap_refuses_exactly_and_nothing_moves(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 100)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    assert hub.pay(alice, bob, 60).status_code == 201
    refused = hub.pay(alice, bob, 50)
    assert refused.status_code == 422 and refused.json()["code"] == "exceeds_net_debit_cap"
    assert (hub.balance(alice), hub.balance(bob)) == (940, 60)
    assert hub.pay(alice, bob, 40).status_code == 201
    assert hub.position(payer) == {"ledger": USD, "position": 100, "net_debit_cap": 100,
                                   "headroom": 0, "settlement_balance": 100, "alarm_percent": 80}
    assert hub.cap(payer, 99).json()["code"] == "net_debit_cap_below_position"
    assert hub.funds(payer, 1, "out").json()["code"] == "settlement_below_position"


def test_concurrent_payments_never_pass_the_cap(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    wallets = [hub.wallet(payer, 1_000) for _ in range(10)]
    bob = hub.wallet(payee)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: hub.pay(wallets[n % 10], bob, 30).json()["result"],
                                range(50)))
    assert answers.count("ok") == 33 and answers.count("exceeds_net_debit_cap") == 17
    assert hub.position(payer)["position"] == 990
    assert hub.position(payee)["position"] == -990
    assert hub.balance(bob) == 990
    assert_balanced(hub.running.totals_at_rest())


def test_a_payment_is_idempotent(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    alice, bob = hub.wallet(payer, 500), hub.wallet(payee)
    assert hub.pay(alice, bob, 10, payment_id="p-" + payer).status_code == 201
    again = hub.pay(alice, bob, 10, payment_id="p-" + payer)
    assert again.status_code == 200 and again.json()["result"] == "exists"
    other = hub.pay(alice, bob, 11, payment_id="p-" + payer)
    assert other.status_code == 409 and other.json()["result"] == "exists_with_different_amount"
    assert hub.position(payer)["position"] == 10 and hub.balance(bob) == 10


def test_within_one_participant_no_position_moves(hub: Switch) -> None:
    bank = hub.participant()
    hub.ready(bank, 50)
    alice, carol = hub.wallet(bank, 500), hub.wallet(bank)
    assert hub.pay(alice, carol, 400).status_code == 201  # beyond the cap: no position moves
    assert hub.position(bank)["position"] == 0 and hub.balance(carol) == 400


def test_who_may_pay_from_which_wallet(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    hub.ready(payee, 1_000)
    alice, bob = hub.wallet(payer, 100), hub.wallet(payee, 100)
    stolen = hub.pay(bob, alice, 5, payer=payer)  # bob is the payee's
    assert stolen.status_code == 422 and stolen.json()["code"] == "payer_account_not_found"
    assert hub.pay(alice, "nope", 5).json()["code"] == "payee_account_not_found"
    assert hub.pay(alice, "house", 5).json()["code"] == "payee_not_enabled"
    assert hub.pay("house", alice, 5).json()["code"] == "payer_not_enabled"
    assert hub.as_(payer, "GET", f"/v1/participants/{payee}/positions").status_code == 404
    assert hub.as_(payer, "PUT", f"/v1/participants/{payer}/ledgers/USD/net-debit-cap",
                   {"net_debit_cap": 1}).status_code == 403
    assert (hub.balance(alice), hub.balance(bob)) == (100, 100)


def test_the_switch_layers_ids_are_its_own(hub: Switch) -> None:
    bank = hub.participant()
    hub.ready(bank, 1_000)
    position = f"hub:position:USD:{bank}:0"
    moved = hub.op("POST", "/v1/transfers", {"id": fresh("t"), "debit_account_id": "house",
                                             "credit_account_id": position, "amount": 5,
                                             "ledger": USD, "code": 1})
    assert moved.status_code == 422 and moved.json()["code"] == "id_reserved"
    made = hub.op("POST", "/v1/accounts", {"id": "hub:mine", "ledger": USD, "code": 1,
                                           "owner": "house"})
    assert made.status_code == 422 and made.json()["result"] == "id_reserved"
    named = hub.op("POST", "/v1/participants", {"id": "hub:x", "name": "x", "ledgers": [USD]})
    assert named.status_code == 422 and named.json()["code"] == "id_reserved"
    assert hub.position(bank)["headroom"] == 1_000


# ---- parties, quotes and fees ----

def test_an_alias_names_its_owners_account(hub: Switch) -> None:
    bank, other = hub.participant(), hub.participant()
    alice, bob = hub.wallet(bank), hub.wallet(other)
    phone = f"+2547{next(_ids):08d}"
    made = hub.as_(bank, "POST", "/v1/parties", {"type": "MSISDN", "id": phone,
                                                 "account_id": alice})
    assert made.status_code == 201, made.text
    shown = {"type": "MSISDN", "id": phone.removeprefix("+"), "participant_id": bank,
             "account_id": alice, "ledger": USD}
    assert made.json()["party"] == shown
    assert hub.as_(other, "GET", f"/v1/parties/MSISDN/{phone}").json() == shown
    again = hub.as_(bank, "POST", "/v1/parties", {"type": "MSISDN", "id": phone,
                                                  "account_id": alice})
    assert again.status_code == 200 and again.json()["result"] == "exists"
    taken = hub.as_(other, "POST", "/v1/parties", {"type": "MSISDN", "id": phone,
                                                   "account_id": bob})
    assert taken.status_code == 409 and taken.json()["code"] == "party_taken"
    stolen = hub.as_(bank, "POST", "/v1/parties", {"type": "EMAIL", "id": "x@example.com",
                                                   "account_id": bob})
    assert stolen.status_code == 422 and stolen.json()["code"] == "account_not_found"
    assert hub.op("GET", "/v1/parties/MSISDN/254999999999").status_code == 404
    assert hub.op("POST", "/v1/parties", {"type": "MSISDN", "id": "call-me",
                                          "account_id": alice}).status_code == 400
    # the alias is inert: no money moves through it
    assert hub.op("POST", "/v1/transfers", {
        "id": fresh("t"), "debit_account_id": "house",
        "credit_account_id": f"hub:party:MSISDN:{phone[1:]}", "amount": 1, "ledger": USD,
        "code": 1}).json()["code"] == "id_reserved"


def quoted(hub: Switch, payer: str, payer_wallet: str, payee_wallet: str, amount: int,
           amount_type: str, ledger: str = "EUR") -> dict[str, Any]:
    alias = f"{fresh('u')}@example.com"
    payee_owner = hub.running.account(payee_wallet)["owner"]
    assert hub.as_(payee_owner, "POST", "/v1/parties", {
        "type": "EMAIL", "id": alias, "account_id": payee_wallet}).status_code == 201
    answer = hub.as_(payer, "POST", "/v1/quotes", {
        "payer_account_id": payer_wallet, "payee": {"type": "EMAIL", "id": alias.upper()},
        "amount": amount, "amount_type": amount_type, "ledger": ledger})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_a_quote_prices_and_binds_a_payment(hub: Switch) -> None:
    payer, payee = hub.participant(ledgers=("EUR",)), hub.participant(ledgers=("EUR",))
    hub.ready(payer, 100_000, ledger="EUR")
    alice, bob = hub.wallet(payer, 50_000, "EUR"), hub.wallet(payee, 0, "EUR")
    # EUR: 10 + 1% (rounded down), at least 15, at most 500
    send = quoted(hub, payer, alice, bob, 1_000, "SEND")
    assert (send["send_amount"], send["fee"], send["receive_amount"]) == (1_000, 20, 980)
    receive = quoted(hub, payer, alice, bob, 199, "RECEIVE")
    assert (receive["send_amount"], receive["fee"], receive["receive_amount"]) == (214, 15, 199)
    assert quoted(hub, payer, alice, bob, 90_000, "RECEIVE")["fee"] == 500
    paid = hub.as_(payer, "POST", "/v1/payments", {"id": fresh("pay"),
                                                   "quote_id": send["quote_id"]})
    assert paid.status_code == 201, paid.text
    assert (paid.json()["payment"]["amount"], paid.json()["payment"]["fee"]) == (980, 20)
    assert (hub.balance(alice), hub.balance(bob)) == (49_000, 980)
    assert hub.balance("hub:fees:EUR") == 20
    assert hub.position(payer, "EUR")["position"] == 980  # the fee is not owed to a payee
    # the terms cannot be changed, forged, or used by another participant
    changed = hub.as_(payer, "POST", "/v1/payments", {
        "id": fresh("pay"), "quote_id": send["quote_id"], "amount": 981})
    assert changed.json()["code"] == "quote_mismatch"
    terms, _, signature = send["quote_id"].partition(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    flipped[0] ^= 1  # a signature one bit away from the switch's
    forged_id = f"{terms}.{base64.urlsafe_b64encode(bytes(flipped)).rstrip(b'=').decode()}"
    forged = hub.as_(payer, "POST", "/v1/payments", {"id": fresh("pay"), "quote_id": forged_id})
    assert forged.json()["code"] == "quote_invalid"
    assert hub.as_(payee, "POST", "/v1/payments", {
        "id": fresh("pay"), "quote_id": send["quote_id"]}).json()["code"] == "quote_invalid"
    assert (hub.balance(alice), hub.balance(bob)) == (49_000, 980)


def test_an_expired_quote_pays_nothing(hub: Switch) -> None:
    payer, payee = hub.participant(ledgers=("EUR",)), hub.participant(ledgers=("EUR",))
    hub.ready(payer, 10_000, ledger="EUR")
    alice, bob = hub.wallet(payer, 5_000, "EUR"), hub.wallet(payee, 0, "EUR")
    quote = unseal(quoted(hub, payer, alice, bob, 100, "RECEIVE")["quote_id"], hub.key())
    assert quote is not None
    stale = seal(msgspec.structs.replace(quote, expires_at=time.time_ns() - 1), hub.key())
    late = hub.as_(payer, "POST", "/v1/payments", {"id": fresh("pay"), "quote_id": stale})
    assert late.status_code == 422 and late.json()["code"] == "quote_expired"
    assert hub.balance(alice) == 5_000


def test_an_unquoted_payment_pays_the_fee_on_top(hub: Switch) -> None:
    payer, payee = hub.participant(ledgers=("EUR",)), hub.participant(ledgers=("EUR",))
    hub.ready(payer, 10_000, ledger="EUR")
    alice, bob = hub.wallet(payer, 1_000, "EUR"), hub.wallet(payee, 0, "EUR")
    assert hub.pay(alice, bob, 500, ledger="EUR").status_code == 201  # fee 15
    assert (hub.balance(alice), hub.balance(bob)) == (485, 500)
    short = hub.pay(alice, bob, 475, ledger="EUR")  # 475 + 15 > 485
    assert short.json()["code"] == "exceeds_credits"
    assert (hub.balance(alice), hub.balance(bob)) == (485, 500)


# ---- two-phase payments ----

def test_prepare_then_fulfil(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 100)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    payment_id = fresh("pay")
    prepared = hub.pay(alice, bob, 70, payment_id=payment_id, mode="two_phase")
    assert prepared.status_code == 201 and prepared.json()["payment"]["state"] == "prepared"
    assert hub.position(payer)["headroom"] == 30  # reserved: the cap counts it already
    assert hub.pay(alice, bob, 40).json()["code"] == "exceeds_net_debit_cap"
    assert hub.balance(bob) == 0
    path = f"/v1/payments/{payment_id}"
    assert hub.as_(payer, "POST", f"{path}/fulfil").status_code == 404  # the payee's to say
    done = hub.as_(payee, "POST", f"{path}/fulfil")
    assert done.status_code == 200 and done.json()["payment"]["state"] == "committed"
    assert hub.as_(payee, "POST", f"{path}/fulfil").json()["result"] == "exists"
    assert (hub.balance(alice), hub.balance(bob)) == (930, 70)
    assert hub.position(payer)["position"] == 70 and hub.position(payee)["position"] == -70
    assert hub.as_(payee, "POST", f"{path}/abort").json()["code"] == \
        "pending_transfer_already_posted"


def test_a_payment_prepared_here_is_fulfilled_without_reading_it_first(hub: Switch) -> None:
    """The ingress keeps what it prepared (hub.prepared_kept_max): its fulfil goes straight
    to the chain of posts, with no read of the wallet leg (a shard round trip) first; who may
    fulfil is checked all the same."""
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 100)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    payment_id = fresh("pay")
    assert hub.pay(alice, bob, 70, payment_id=payment_id, mode="two_phase").status_code == 201
    router = hub.running.router
    assert router is not None
    asked: list[str] = []
    original = router.ask

    async def counting(shard: int, command: Any) -> Any:
        asked.append(type(command).__name__)
        return await original(shard, command)

    router.ask = counting  # type: ignore[method-assign]
    try:
        path = f"/v1/payments/{payment_id}"
        assert hub.as_(payer, "POST", f"{path}/fulfil").status_code == 404  # the payee's
        done = hub.as_(payee, "POST", f"{path}/fulfil")
        assert done.status_code == 200 and done.json()["payment"]["state"] == "committed"
        assert "GetTransfer" not in asked, asked
    finally:
        del router.ask
    assert (hub.balance(alice), hub.balance(bob)) == (930, 70)


def test_abort_and_expiry_release_everything(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 100)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    aborted, expiring = fresh("pay"), fresh("pay")
    assert hub.pay(alice, bob, 60, payment_id=aborted, mode="two_phase").status_code == 201
    assert hub.as_(payee, "POST", f"/v1/payments/{aborted}/abort").json()["payment"][
        "state"] == "aborted"
    assert hub.pay(alice, bob, 90, payment_id=expiring, mode="two_phase",
                   timeout_ms=300).status_code == 201
    deadline = time.monotonic() + 15
    while hub.op("GET", f"/v1/payments/{expiring}").json()["state"] != "expired":
        assert time.monotonic() < deadline, "the prepared payment never expired"
        time.sleep(0.1)
    late = hub.as_(payee, "POST", f"/v1/payments/{expiring}/fulfil")
    assert late.json()["code"] == "pending_transfer_expired"
    deadline = time.monotonic() + 10
    while hub.position(payer)["headroom"] != 100:
        assert time.monotonic() < deadline, "the reservation was never released"
        time.sleep(0.1)
    assert (hub.balance(alice), hub.balance(bob)) == (1_000, 0)
    assert_balanced(hub.running.totals_at_rest())


# ---- found by review: each failed before its fix ----

def escaped(body: dict[str, Any]) -> bytes:
    """JSON whose `hub:` ids are written with a \\u escape (the same string, decoded)."""
    return orjson.dumps(body).replace(b'"hub:', b'"\\u0068ub:')


def test_an_escaped_reserved_id_is_still_refused(hub: Switch) -> None:
    bank = hub.participant()
    hub.ready(bank, 100)
    alice = hub.wallet(bank, 1_000)
    body = escaped({"id": fresh("t"), "debit_account_id": alice, "amount": 500,
                    "credit_account_id": f"hub:position:USD:{bank}:0", "ledger": USD, "code": 1})
    moved = hub.running.client.post(
        hub.running.url + "/v1/transfers", content=body,
        headers={"Authorization": f"Bearer {hub.keys[bank]}",
                 "Content-Type": "application/json"})
    assert moved.status_code == 422 and moved.json()["code"] == "id_reserved"
    assert hub.position(bank)["headroom"] == 100


def test_a_payer_cannot_post_its_own_leg(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 100)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    payment_id = fresh("pay")
    assert hub.pay(alice, bob, 70, payment_id=payment_id, mode="two_phase").status_code == 201
    body = escaped({"id": fresh("t"), "pending_id": f"hub:payment:{payment_id}:wallet",
                    "flags": {"post_pending_transfer": True}})
    posted = hub.running.client.post(
        hub.running.url + "/v1/transfers", content=body,
        headers={"Authorization": f"Bearer {hub.keys[payer]}",
                 "Content-Type": "application/json"})
    assert posted.status_code == 422 and posted.json()["code"] == "id_reserved"
    assert hub.balance(bob) == 0


def test_no_limits_on_the_switch_layers_accounts(hub: Switch) -> None:
    bank = hub.participant()
    hub.ready(bank, 100)
    limited = hub.op("PUT", f"/v1/accounts/hub:position:USD:{bank}:0/limits",
                     {"overdraft": 500})
    assert limited.status_code == 422 and limited.json()["code"] == "id_reserved"


def test_an_account_id_alias_is_that_account(hub: Switch) -> None:
    bank, other = hub.participant(), hub.participant()
    alice, bob = hub.wallet(bank), hub.wallet(other)
    squat = hub.as_(bank, "POST", "/v1/parties", {"type": "ACCOUNT_ID", "id": bob,
                                                  "account_id": alice})
    assert squat.status_code == 422 and squat.json()["code"] == "alias_not_account_id"
    assert hub.as_(other, "POST", "/v1/parties", {"type": "ACCOUNT_ID", "id": bob,
                                                  "account_id": bob}).status_code == 201


def test_funds_out_keeps_the_cap_covered(hub: Switch) -> None:
    bank = hub.participant()
    hub.ready(bank, 1_000)
    out = hub.funds(bank, 900, "out")
    assert out.status_code == 422 and out.json()["code"] == "settlement_below_net_debit_cap"
    assert hub.cap(bank, 100).status_code == 200
    assert hub.funds(bank, 900, "out").status_code == 201
    assert hub.position(bank)["settlement_balance"] == 100


def test_a_chain_that_failed_on_a_repeat_is_not_ok() -> None:
    legs = payment_legs(Payment("p", "a", "b", 5, 1, USD, "x", "y"), "k")
    assert payment_result(legs, ["exists", "linked_event_failed", "linked_event_failed"]) == \
        "exists_with_different_terms"
    assert payment_result(legs, ["exists"] * 3) == "exists"
    assert payment_result(legs, ["ok"] * 3) == "ok"
    assert payment_result(legs, ["linked_event_failed", "linked_event_failed",
                                 "exceeds_credits"]) == "exceeds_net_debit_cap"


def test_one_payment_sent_many_times_at_once_is_applied_once(hub: Switch) -> None:
    """Concurrent copies of one payment reach the router in one batch (the coalescer): the
    chain is applied once, and every copy answers ok or exists."""
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    payment_id = fresh("pay")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: hub.pay(alice, bob, 70, payment_id=payment_id),
                                range(8)))
    assert {a.json()["result"] for a in answers} <= {"ok", "exists"}, [a.text for a in answers]
    assert [a.json()["result"] for a in answers].count("ok") == 1
    assert (hub.balance(alice), hub.balance(bob)) == (930, 70)
    assert hub.position(payer)["position"] == 70


# ---- payments in arrays (bulk) ----

def test_an_array_of_payments_answers_each_in_order_and_moves_each_once(hub: Switch) -> None:
    """Each item is its own payment: one refused by the cap, one of another participant's
    wallet and one with a bad quote answer their own codes; the others move; a repeat of
    the array answers exists for the ones made and moves nothing more."""
    payer, payee, other = hub.participant(), hub.participant(), hub.participant()
    hub.ready(payer, 100)
    alice, bob, carol = hub.wallet(payer, 1_000), hub.wallet(payee), hub.wallet(other, 50)
    ids = [fresh("bulk") for _ in range(5)]
    body = [{"id": ids[0], "payer_account_id": alice, "payee_account_id": bob, "amount": 60,
             "ledger": USD},
            {"id": ids[1], "payer_account_id": alice, "payee_account_id": bob, "amount": 30,
             "ledger": USD, "mode": "two_phase"},
            {"id": ids[2], "payer_account_id": alice, "payee_account_id": bob, "amount": 11,
             "ledger": USD},  # 60 + 30 reserved + 11 > 100, whatever the order they run in
            {"id": ids[3], "payer_account_id": carol, "payee_account_id": bob, "amount": 5,
             "ledger": USD},  # not the payer's wallet
            {"id": ids[4], "quote_id": "not-a-quote"}]
    answer = hub.as_(payer, "POST", "/v1/payments", body)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(r["index"], r["id"]) for r in results] == list(enumerate(ids))
    codes = [r["result"] for r in results]
    assert codes[3:] == ["payer_account_not_found", "quote_invalid"]
    assert sorted(codes[:3]) == ["exceeds_net_debit_cap", "ok", "ok"], codes
    made = {r["id"]: r for r in results if r["result"] == "ok"}
    assert all(isinstance(r["timestamp"], int) for r in made.values())
    assert {made[i]["state"] for i in made} <= {"committed", "prepared"}
    moved = sum(item["amount"] for item in body[:3] if item["id"] in made
                and item.get("mode") != "two_phase")
    assert hub.balance(bob) == moved
    again = hub.as_(payer, "POST", "/v1/payments", body).json()["results"]
    assert [r["result"] for r in again if r["id"] in made] == ["exists"] * len(made)
    assert {r["id"]: (r["state"], r["timestamp"]) for r in again if r["id"] in made} == {
        i: (made[i]["state"], made[i]["timestamp"]) for i in made}  # as made, read back
    assert hub.balance(bob) == moved and hub.balance(carol) == 50
    twice = fresh("bulk")  # one id twice in an array: made once, like a transfer's
    item = {"id": twice, "payer_account_id": alice, "payee_account_id": bob, "amount": 1,
            "ledger": USD}
    answers = hub.as_(payer, "POST", "/v1/payments", [item, item]).json()["results"]
    assert sorted(r["result"] for r in answers) == ["exists", "ok"], answers
    assert hub.balance(bob) == moved + 1


def test_prepared_payments_are_fulfilled_and_aborted_in_arrays(hub: Switch) -> None:
    payer, payee, third = hub.participant(), hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    ids = [fresh("bulk2") for _ in range(6)]
    prepared = hub.as_(payer, "POST", "/v1/payments", [
        {"id": payment_id, "payer_account_id": alice, "payee_account_id": bob, "amount": 10,
         "ledger": USD, "mode": "two_phase"} for payment_id in ids]).json()["results"]
    assert [r["state"] for r in prepared] == ["prepared"] * 6
    assert hub.as_(payer, "POST", "/v1/payments/fulfil", [{"id": ids[0]}]).json()[
        "results"][0]["result"] == "payment_not_found"  # the payee's to say
    assert hub.as_(third, "POST", "/v1/payments/abort", [{"id": ids[0]}]).json()[
        "results"][0]["result"] == "payment_not_found"
    fulfilled = hub.as_(payee, "POST", "/v1/payments/fulfil",
                        [{"id": i} for i in ids[:4]] + [{"id": fresh("none")}]).json()
    assert [r["result"] for r in fulfilled["results"]] == ["ok"] * 4 + ["payment_not_found"]
    assert {r["state"] for r in fulfilled["results"][:4]} == {"committed"}
    aborted = hub.as_(payee, "POST", "/v1/payments/abort", [{"id": i} for i in ids[3:]])
    assert [r["result"] for r in aborted.json()["results"]] == [
        "pending_transfer_already_posted", "ok", "ok"]
    one = hub.as_(payee, "POST", "/v1/payments/fulfil", {"id": ids[0]})  # one object
    assert one.status_code == 200 and one.json()["result"] == "exists"
    assert one.json()["payment"]["state"] == "committed"
    assert (hub.balance(alice), hub.balance(bob)) == (960, 40)
    assert hub.position(payer)["position"] == 40 and hub.position(payee)["position"] == -40


def test_bad_payment_arrays_are_refused_whole(hub: Switch) -> None:
    bank = hub.participant()
    alice = hub.wallet(bank, 100)
    item = {"id": fresh("bad"), "payer_account_id": alice, "payee_account_id": alice,
            "amount": 1, "ledger": USD}
    for path, body, code in [("/v1/payments", [], "batch_empty"),
                             ("/v1/payments", [item, {**item, "amount": 1.5}],
                              "validation_error"),
                             ("/v1/payments/fulfil", [], "batch_empty"),
                             ("/v1/payments/abort", [{"id": "x", "more": 1}],
                              "validation_error"),
                             ("/v1/payments/fulfil", [{"id": "bad id"}], "validation_error")]:
        answer = hub.as_(bank, "POST", path, body)
        assert (answer.status_code, answer.json()["code"]) == (400, code), (path, answer.text)
    assert hub.balance(alice) == 100


def test_the_client_sends_concurrent_payments_and_fulfils_as_arrays(hub: Switch) -> None:
    """One call per payment in the application, few requests on the wire (counted on the
    server), each caller its own result; two-phase ones fulfilled by the payee's client."""
    from switch.client import AsyncClient, Client
    from tests.switch.test_client import requests_served

    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 3_500)
    alice, bob = hub.wallet(payer, 100_000), hub.wallet(payee)
    ids = [fresh("cp") for _ in range(300)]
    sizes: list[tuple[str, int]] = []

    async def scenario() -> None:
        url = hub.running.url
        async with AsyncClient(url, hub.keys[payer], on_batch=lambda kind, size: sizes.append(
                (kind, size))) as paying, AsyncClient(url, hub.keys[payee]) as paid:
            before = requests_served(hub.running, "post_payment")
            made = await asyncio.gather(*(paying.create_payment(
                payment_id, alice, bob, 10, USD, two_phase=n % 2 == 1)
                for n, payment_id in enumerate(ids)))
            served = requests_served(hub.running, "post_payment") - before
            assert 1 <= served <= 10, served  # 300 calls, a handful of requests
            assert [m.id for m in made] == ids
            assert [(m.result, m.state) for m in made] == [
                ("ok", "prepared" if n % 2 else "committed") for n in range(300)]
            over = await paying.create_payment(fresh("cp"), alice, bob, 600, USD)
            assert over.result == "exceeds_net_debit_cap"  # 150 x 10 made, 150 x 10 held
            fulfilled = await asyncio.gather(*(paid.fulfil_payment(i) for i in ids[1::2]))
            assert {(f.result, f.state) for f in fulfilled} == {("ok", "committed")}
            assert (await paying.fulfil_payment(ids[1])).result == "payment_not_found"

    asyncio.run(scenario())
    assert any(kind == "payments" and size > 50 for kind, size in sizes), sizes
    assert hub.balance(bob) == 3_000
    with Client(hub.running.url, hub.keys[payee]) as client, ThreadPoolExecutor(4) as pool:
        aborts = list(pool.map(client.abort_payment, ids[1::2][:8]))  # the sync client
    assert {a.result for a in aborts} == {"pending_transfer_already_posted"}


def test_payments_are_counted_by_action_and_result_on_metrics(hub: Switch) -> None:
    """What operators watch: payments made and refused (the cap above all), fulfils and
    aborts, one object or an array, refusals before the ledger included."""
    from tests.switch.test_metrics import samples

    def counts() -> dict[tuple[str, str], float]:
        found = samples(hub.op("GET", "/metrics").text)
        return {(dict(labels)["action"], dict(labels)["result"]): value
                for (name, labels), value in found.items() if name == "payswitch_payments_total"}

    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 100)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    before = counts()
    assert hub.pay(alice, bob, 60).status_code == 201
    assert hub.pay(alice, bob, 50).json()["code"] == "exceeds_net_debit_cap"
    assert hub.post_payment({"id": fresh("p"), "quote_id": "nope"}).status_code == 422
    prepared = fresh("p")
    hub.as_(payer, "POST", "/v1/payments", [
        {"id": prepared, "payer_account_id": alice, "payee_account_id": bob, "amount": 10,
         "ledger": USD, "mode": "two_phase"},
        {"id": fresh("p"), "payer_account_id": alice, "payee_account_id": bob, "amount": 90,
         "ledger": USD}])
    assert hub.as_(payee, "POST", f"/v1/payments/{prepared}/fulfil").status_code == 200
    hub.as_(payee, "POST", "/v1/payments/abort", [{"id": prepared}])
    after = counts()
    grown = {key: after[key] - before.get(key, 0) for key in after
             if after[key] != before.get(key, 0)}
    assert grown == {("pay", "ok"): 2, ("pay", "exceeds_net_debit_cap"): 2,
                     ("pay", "quote_invalid"): 1, ("fulfil", "ok"): 1,
                     ("abort", "pending_transfer_already_posted"): 1}, grown


def test_a_participant_opens_at_most_its_quota_of_accounts(hub: Switch) -> None:
    """auth.accounts_per_participant_max (8 here, over 3 shards: 3 each): its own keys'
    creations past a shard's share answer account_quota_exceeded and open nothing; the
    operator still opens accounts for it."""
    bank = hub.participant()
    ids = [fresh("q") for _ in range(20)]
    body = [{"id": account_id, "ledger": USD, "code": 1, "owner": bank,
             "flags": {"debits_must_not_exceed_credits": True}} for account_id in ids]
    results = hub.as_(bank, "POST", "/v1/accounts", body).json()["results"]
    made = [r["id"] for r in results if r["result"] == "ok"]
    refused = [r["id"] for r in results if r["result"] == "account_quota_exceeded"]
    assert 3 <= len(made) <= 9 and len(made) + len(refused) == 20, results
    assert hub.as_(bank, "GET", f"/v1/accounts/{refused[0]}").status_code == 404
    again = hub.as_(bank, "POST", "/v1/accounts", body).json()["results"]
    assert {r["id"]: r["result"] for r in again} == {
        **{i: "exists" for i in made}, **{i: "account_quota_exceeded" for i in refused}}
    one = hub.as_(bank, "POST", "/v1/accounts", body[ids.index(refused[0])])
    assert (one.status_code, one.json()["code"]) == (422, "account_quota_exceeded")
    assert hub.wallet(bank)  # the operator's: not bound
    # Aliases are accounts it owns: its key's registrations are bound too (found by review).
    target = made[0]
    answers = [hub.as_(bank, "POST", "/v1/parties", {"type": "EMAIL", "id": f"{fresh('a')}@x.io",
                                                     "account_id": target}) for _ in range(12)]
    codes = [a.json()["result"] for a in answers]
    assert "account_quota_exceeded" in codes and set(codes) <= {"ok", "account_quota_exceeded"}

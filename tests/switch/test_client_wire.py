"""The client's JSON and the server's agree on every flag: what `transfer_body` sends parses,
on the server, to the same bits; what the server shows reads back to the same transfer."""

from __future__ import annotations

import msgspec
import orjson
from hypothesis import given
from hypothesis import strategies as st

from actors.ledger.model import TRANSFER_FLAGS_ALL, Transfer
from switch.api.fast_parse import TransferWire
from switch.api.views import transfer_from_request, transfer_json
from switch.client.wire import transfer_body, transfer_of


@given(st.integers(min_value=0, max_value=TRANSFER_FLAGS_ALL))
def test_every_flag_travels_both_ways(flags: int) -> None:
    sent = Transfer("t1", "a", "b", 5, "USD", 1, "", flags, "p1", 0)
    parsed = msgspec.json.decode(orjson.dumps(transfer_body(sent)), type=TransferWire)
    received = transfer_from_request(parsed)
    assert received.flags == flags
    assert transfer_of(orjson.loads(orjson.dumps(transfer_json(received)))).flags == flags

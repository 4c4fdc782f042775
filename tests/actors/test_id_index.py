"""The account table's index of ids: it must answer as a dict of id -> row would, whatever the
ids and however their hashes collide."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import actors.ledger.id_index as id_index_module
from actors.ledger.id_index import IdIndex

IDS = st.lists(st.text(st.characters(codec="utf-8"), min_size=1, max_size=64), unique=True,
               max_size=3000)


def _answers_like_a_dict(index: IdIndex, ids: list[str], absent: list[str]) -> None:
    expected = {account_id: row for row, account_id in enumerate(ids)}
    assert len(index) == len(ids)
    assert list(index) == ids
    for account_id, row in expected.items():
        assert index.row_of(account_id) == row and index.id_of(row) == account_id
        assert account_id in index
    for account_id in absent:
        if account_id not in expected:
            assert index.row_of(account_id) is None and account_id not in index


@given(IDS, st.lists(st.text(max_size=64), max_size=50))
def test_ids_added_one_by_one_answer_as_a_dict(ids: list[str], absent: list[str]) -> None:
    index = IdIndex()
    for row, account_id in enumerate(ids):
        assert index.add(account_id) == row
    _answers_like_a_dict(index, ids, absent)


@given(IDS, st.lists(st.text(max_size=64), max_size=50))
def test_ids_loaded_at_once_answer_as_a_dict(ids: list[str], absent: list[str]) -> None:
    _answers_like_a_dict(IdIndex(ids), ids, absent)


@pytest.mark.parametrize("collide", [lambda _: 7, lambda s: len(s) << 40, len])
def test_ids_whose_hashes_collide_are_told_apart_by_their_bytes(
        monkeypatch: pytest.MonkeyPatch, collide: object) -> None:
    monkeypatch.setattr(id_index_module, "_hash_of", collide)
    # 1,103 ids: the table grows twice (at 513 and 1,025 ids); each lookup probes them all
    ids = [f"acct-{n}" for n in range(1100)] + ["é", "e", "ée"]
    index = IdIndex(ids[:100])
    for account_id in ids[100:]:
        index.add(account_id)
    _answers_like_a_dict(index, ids, ["acct-1100", "acct-", "x", "é" * 2])
    assert len(index._slots) == 4096


def test_an_index_holds_ids_in_a_few_dozen_bytes_each() -> None:
    ids = [f"acct-{n:07d}" for n in range(100_000)]
    index = IdIndex(ids)
    held = len(index._bytes) + index._ends.itemsize * len(index._ends) + \
        index._slots.itemsize * len(index._slots)
    assert held / len(ids) < 45  # a dict[str, int] of the same ids: ~124 bytes each


@pytest.mark.parametrize("size", [3, 511, 512])  # 512: the 513th id grows the table
def test_an_id_added_twice_or_empty_is_refused_and_changes_nothing(size: int) -> None:
    ids = [f"id-{n}" for n in range(size)]
    index = IdIndex(ids)
    for refused in ("id-0", f"id-{size - 1}", ""):
        with pytest.raises(ValueError):
            index.add(refused)
        _answers_like_a_dict(index, ids, ["id-x"])
    assert index.add("id-x") == size


def test_buffers_that_are_not_utf8_ids_are_refused() -> None:
    good = IdIndex(["é1", "a2"])
    assert IdIndex.from_buffers(*good.buffers()).row_of("é1") == 0
    with pytest.raises(ValueError, match="UTF-8"):
        IdIndex.from_buffers(b"\xff\xff1a2", good.buffers()[1])
    with pytest.raises(IndexError):
        good.id_of(-1)

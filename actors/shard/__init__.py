"""The shard host around the ledger core: batches, group commit, snapshots, recovery; and the
Ray actor (`actor.py`, the only module here that imports Ray)."""

"""The ledger rules: a pure, deterministic core (no Ray, LMDB, clock or I/O).

Decisions read state and return a result code and the events to record; `Ledger.apply` is the
only mutation, run alike for live events and for events read back from the log.
"""

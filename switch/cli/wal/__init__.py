"""`payswitch wal ...`: look inside a data directory's logs, verify, replay, export, repair."""

"""Durability: log records, the LMDB log, snapshots and recovery. Only this package imports LMDB."""

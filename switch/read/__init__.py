"""Reads that never touch the write path: the event stream and the query read model."""

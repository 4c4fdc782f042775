"""The `payswitch` command: `serve`, `wal`, and the settings they load."""

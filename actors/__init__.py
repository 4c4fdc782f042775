"""The domain core (pure ledger rules) and the shard host around it.

Only actors.shard imports Ray; everything else here runs without it.
"""

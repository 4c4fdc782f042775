"""Routing: which shard holds what, micro-batching toward each shard, and the cross-shard
protocol (reserve, decide, finalize; linked chains; redrive of what a crash left in doubt)."""

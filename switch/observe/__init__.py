"""Watching the switch: request ids, Prometheus metrics, the monitor, the live dashboard."""

"""The service: HTTP API, router, settings and the `payswitch` command."""

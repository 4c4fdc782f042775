"""The HTTP API: Starlette routes, request and response schemas, errors, the OpenAPI document."""

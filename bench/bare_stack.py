"""The HTTP stack's own ceiling per request: the switch's server (uvicorn with httptools and
uvloop, one process) and framework (Starlette) answering `POST /v1/transfers` with nothing
behind it: the body parsed with orjson, a result encoded with orjson. The speed issue's
targets for one transfer per request are ratios to this figure, measured in the same run.

    python -m bench.bare_stack --port 18090
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def create_transfer(request: Request) -> Response:
    transfer = orjson.loads(await request.body())
    return Response(orjson.dumps({"id": transfer["id"], "result": "ok"}),
                    media_type="application/json")


app = Starlette(routes=[Route("/v1/transfers", create_transfer, methods=["POST"])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.bare_stack", description=__doc__)
    parser.add_argument("--port", type=int, default=18090)
    args = parser.parse_args(argv)
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()

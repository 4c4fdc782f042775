"""The `payswitch` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

try:
    from switch.cli.settings import DEFAULT_CONFIG, load_settings
except ImportError as missing:  # `pip install payswitch` holds the client only
    sys.exit(f"payswitch: the server is not installed ({missing.name} is missing): "
             "pip install 'payswitch[server]'")

# Each command's module, imported only when it runs (or for the whole help): a `wal verify`
# does not load the key, settlement and slot commands' dependencies first.
COMMANDS = {"wal": "switch.cli.wal.commands", "keys": "switch.cli.keys",
            "settlement": "switch.cli.settlement", "slots": "switch.cli.slots"}


def _command(name: str) -> ModuleType:
    try:
        return importlib.import_module(COMMANDS[name])
    except ImportError as missing:
        sys.exit(f"payswitch: the server is not installed ({missing.name} is missing): "
                 "pip install 'payswitch[server]'")


def _asked(argv: list[str]) -> str | None:
    """The command named on the command line, if it is one of COMMANDS or serve (None, for
    the whole parser, if help is asked before it: `payswitch -h wal` lists every command)."""
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg if arg in (*COMMANDS, "serve") else None
    return None


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payswitch",
        description="An actor-based payment switch: double-entry transfers on Ray shards "
        "with an LMDB write-ahead log.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the switch (HTTP API, router, shards)",
        description="Run the switch. Options default to config/default.toml, then to "
        "PAYSWITCH_<SECTION>_<KEY> environment variables; flags win over both.",
    )
    serve.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="TOML settings file")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (server.port)")
    serve.add_argument("--data-dir", help="where the shards keep their logs (data.dir)")
    serve.add_argument("--shards", type=int, help="number of shard actors; 0 = what the data "
                       "directory says (for a new one: half the CPUs, at least one)")
    serve.add_argument("--ray-address", help="join this Ray cluster (ray.address; default: "
                       "start an embedded one-machine Ray). See docs/CLUSTER.md")
    serve.add_argument("--workers", type=int, help="HTTP ingress processes sharing the port "
                       "(server.workers; default 1)")
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS: the certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="serve HTTPS: the private key (PEM)")
    for name in COMMANDS:
        if only is None or only == name:
            _command(name).add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    args = _parser(_asked(arguments)).parse_args(arguments)
    if args.command in COMMANDS:
        result: int = _command(args.command).run(args)
        return result
    if args.command == "serve":
        from switch.cli.serve import serve

        try:
            settings = load_settings(
                args.config,
                overrides={
                    "server.host": args.host,
                    "server.port": args.port,
                    "data.dir": args.data_dir,
                    "shards.count": args.shards,
                    "ray.address": args.ray_address,
                    "server.workers": args.workers,
                    "server.tls_cert": None if args.tls_cert is None else str(args.tls_cert),
                    "server.tls_key": None if args.tls_key is None else str(args.tls_key),
                },
            )
        except (ValueError, TypeError, OSError) as error:
            print(f"payswitch: bad configuration: {error}", file=sys.stderr)
            return 2
        return serve(settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())

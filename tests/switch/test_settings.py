"""Settings: the file, then the environment, then flags; every bound checked at start-up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from switch.cli.main import _asked, main
from switch.cli.settings import load_settings


def test_defaults_come_from_the_file() -> None:
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    assert settings.data.dir == "./data" and settings.api.batch_items_max == 8190
    assert settings.wal.map_size_bytes > 0 and settings.ledgers["USD"] == 2
    assert settings.shards.count == 0  # what the data directory says (half the CPUs if new)


def test_environment_then_flags_override() -> None:
    environ = {"PAYSWITCH_SERVER_PORT": "9001", "PAYSWITCH_GC_FREEZE_AFTER_START": "false",
               "PAYSWITCH_DATA_DIR": "/tmp/elsewhere"}
    settings = load_settings(environ=environ)
    assert settings.server.port == 9001 and settings.gc.freeze_after_start is False
    assert settings.data.dir == "/tmp/elsewhere"
    flagged = load_settings(environ=environ, overrides={"server.port": 9002, "shards.count": 3})
    assert flagged.server.port == 9002 and flagged.shards.count == 3


@pytest.mark.parametrize(("environ", "message"), [
    ({"PAYSWITCH_SERVER_PORT": "0"}, "server.port: Input should be greater than 0 \\(got '0'\\)"),
    ({"PAYSWITCH_API_BATCH_ITEMS_MAX": "-1"}, "api.batch_items_max: Input should be greater"),
    ({"PAYSWITCH_ROUTER_CALL_COMMANDS_MAX": "100"}, "must hold a whole batch"),
    ({"PAYSWITCH_WAL_MAP_SIZE_BYTES": "4096"}, "wal.map_size_bytes: .* 1048576"),
    ({"PAYSWITCH_GC_FREEZE_AFTER_START": "maybe"}, "gc.freeze_after_start: .* valid boolean"),
    ({"PAYSWITCH_SERVER_PORT": "eighty"}, "server.port: .* valid integer"),
    ({"PAYSWITCH_SERVER_PROT": "8080"}, "server.prot: Extra inputs are not permitted"),
    ({"PAYSWITCH_LOGGING_LEVEL": "LOUD"}, "logging.level must be one of"),
    ({"PAYSWITCH_LEDGERS": json.dumps({f"L{n:03}": 2 for n in range(257)})}, "at most 256"),
])
def test_bad_values_stop_start_up(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(environ=environ)


def test_other_payswitch_variables_are_not_settings() -> None:
    settings = load_settings(environ={"PAYSWITCH_FAILPOINTS": "shard.after_commit=#3",
                                      "PAYSWITCH_LOGGING_JSON": "false"})
    assert settings.logging.json_lines is False


@pytest.mark.parametrize(("terminal", "json_lines"), [(True, False), (False, True)])
def test_logs_are_json_unless_on_a_terminal(monkeypatch: pytest.MonkeyPatch, terminal: bool,
                                            json_lines: bool) -> None:
    """`logging.json = "auto"` (the default): readable lines and a banner on a terminal,
    JSON lines for a service or a pipe; true or false force it."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert load_settings(environ={}).logging.json_lines is json_lines
    for forced in (True, False):
        assert load_settings(environ={"PAYSWITCH_LOGGING_JSON": str(forced).lower()}
                             ).logging.json_lines is forced
    with pytest.raises(ValueError, match=r"logging\.json: true, false or auto"):
        load_settings(environ={"PAYSWITCH_LOGGING_JSON": "maybe"})


def test_cli_refuses_bad_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PAYSWITCH_SHARDS_SLOTS", "0")
    assert main(["serve", "--data-dir", str(tmp_path)]) == 2
    assert "bad configuration" in capsys.readouterr().err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--data-dir", "--shards"):
        assert flag in out


def test_the_switch_url_brackets_an_ipv6_host() -> None:
    from switch.cli.banner import server_url

    assert server_url(load_settings(environ={})) == "http://127.0.0.1:8080"
    assert server_url(load_settings(environ={}, overrides={"server.host": "::"})) == \
        "http://[::]:8080"


def test_the_console_counts_one_shard_in_the_singular() -> None:
    """One shard is the default on 2 cores: the banner said "1 shards, 0 followers"."""
    from switch.cli.banner import counted

    assert [counted(n, "shard") for n in (0, 1, 2)] == ["0 shards", "1 shard", "2 shards"]


def test_the_command_line_names_the_one_command_to_load() -> None:
    """`payswitch` loads only the command it runs; help asked first shows them all."""
    assert _asked(["wal", "verify", "data"]) == "wal"
    assert _asked(["serve", "--config", "wal"]) == "serve"
    assert _asked(["-h", "wal"]) is None and _asked(["--help"]) is None
    assert _asked(["bogus"]) is None and _asked([]) is None

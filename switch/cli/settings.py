"""Configuration: config/default.toml, then PAYSWITCH_* environment variables, then flags.

Loaded by pydantic-settings: the TOML file is the lowest source, `PAYSWITCH_<SECTION>_<KEY>`
variables override it (the first `_` after the section splits section from key, so
`PAYSWITCH_WAL_MAP_SIZE_BYTES` is `wal.map_size_bytes`), and flags ("section.key" overrides)
win. Every value is validated and every bound checked when loading (`load_settings`), so a
bad value stops the switch before it serves anything, with a message naming the setting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from actors.ledger.accounts import LEDGERS_MAX
from actors.ledger.model import AMOUNT_MAX

ENV_PREFIX = "PAYSWITCH_"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "default.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

Positive = Field(gt=0)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str
    port: int = Field(gt=0, le=65535)
    body_bytes_max: int = Positive
    requests_in_flight_max: int = Positive
    streams_max: int = Positive  # long-polls and event streams open at once, in all
    streams_per_client_max: int = Positive  # ... and from one client address
    retry_after_seconds: int = Positive
    access_log: bool
    tls_cert: str = ""  # PEM files: both, to serve HTTPS (uvicorn's TLS); neither: HTTP
    tls_key: str = ""
    # HTTP processes on one port (SO_REUSEPORT), each its own Ray driver (docs/CLUSTER.md)
    workers: int = Field(default=1, ge=1, le=16)  # each opens one data connection per shard

    @model_validator(mode="after")
    def _tls_both_or_neither(self) -> ServerSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("server.tls_cert and server.tls_key go together")
        return self


class ApiSettings(_Section):
    batch_items_max: int = Positive
    history_page_max: int = Positive


class DataSettings(_Section):
    dir: str


class ShardSettings(_Section):
    count: int = Field(ge=0)  # 0: what the data directory says (half the CPUs if new)
    slots: int = Positive
    transfer_cache_max: int = Positive  # recently indexed transfers each shard keeps in memory
    transport: Literal["socket", "ray"] = "socket"  # how the router's batches reach a shard


class RouterSettings(_Section):
    shard_queue_commands_max: int = Positive
    call_commands_max: int = Positive
    redrive_interval_ms: int = Positive
    # With several ingress processes: another's in-doubt parts are settled from this age
    # (its rounds are done by then, or it died); docs/CLUSTER.md
    foreign_redrive_age_ms: int = Field(default=10_000, gt=0)
    # A plain or pending transfer across shards is answered after one durable round (its
    # home stages it beside the reservations) instead of two; docs/ARCHITECTURE.md
    staged_commit: bool = True


class WalSettings(_Section):
    map_size_bytes: int = Field(ge=1 << 20)
    snapshot_every_events: int = Positive


class RaySettings(_Section):
    address: str
    object_store_bytes: int = Positive
    include_dashboard: bool
    num_cpus: int = Field(ge=0)


class GcSettings(_Section):
    freeze_after_start: bool
    generation0_threshold: int = Positive


class LoggingSettings(_Section):
    level: str
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # `json` would shadow a BaseModel method. "auto": JSON lines when stderr is not a
    # terminal (a service, a pipe, a log shipper), readable lines and a banner on one.
    json_lines: bool = Field(alias="json")

    @field_validator("json_lines", mode="before")
    @classmethod
    def _by_terminal(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word == "auto":
            return not sys.stderr.isatty()
        if word in ("true", "false"):
            return word == "true"
        raise ValueError("true, false or auto")

    @model_validator(mode="after")
    def _known_level(self) -> LoggingSettings:
        if self.level.upper() not in LOG_LEVELS:
            raise ValueError(f"logging.level must be one of {', '.join(LOG_LEVELS)}")
        return self


class MonitorSettings(_Section):
    interval_ms: int = Positive
    window_s: int = Positive


class AuthSettings(_Section):
    # A token bucket per participant or auditor key (operator keys are not limited: they
    # run the switch, and are not for applications): requests per second, and the burst.
    requests_per_second: float = Field(gt=0)
    burst: int = Positive
    refresh_interval_ms: int = Field(gt=0, le=1000)  # revocation reaches every ingress by then
    # Accounts a participant's keys may open for it, in all (0: no bound): accounts live in
    # memory. Shared out evenly over the shards (each refuses past its share).
    accounts_per_participant_max: int = Field(ge=0)


class FeeRule(_Section):
    """A payment's fee: `fixed` plus `basis_points` of the amount (the basis-point part
    rounded down to a whole minor unit), then held between `min` and `max` (0: no maximum).
    A rule for one payer and payee participant pair wins over its ledger's."""

    fixed: int = Field(default=0, ge=0, le=AMOUNT_MAX)
    basis_points: int = Field(default=0, ge=0, le=10_000)
    min: int = Field(default=0, ge=0, le=AMOUNT_MAX)
    max: int = Field(default=0, ge=0, le=AMOUNT_MAX)
    payer: str = ""  # both, or neither: a pair's rule
    payee: str = ""

    @model_validator(mode="after")
    def _bounds(self) -> FeeRule:
        if self.max and self.min > self.max:
            raise ValueError("a fee rule's min must not exceed its max")
        if bool(self.payer) != bool(self.payee):
            raise ValueError("a fee rule names both payer and payee, or neither")
        return self


class ReplicationSettings(_Section):
    """Each shard's log shipped to a follower on another storage node (docs/CLUSTER.md)."""

    # auto: sync when the cluster has two storage nodes or more, else off
    mode: Literal["auto", "sync", "async", "off"] = "auto"
    # a sync batch whose follower has not confirmed by then fails, and the shard goes on
    # without its follower once the controller has recorded it out of sync
    ack_timeout_ms: int = Field(default=2_000, gt=0)


class HubSettings(_Section):
    """The switch layer (docs/SWITCH.md)."""

    quote_expiry_ms: int = Field(default=60_000, gt=0)  # how long a quote's terms bind
    prepare_timeout_ms: int = Field(default=30_000, gt=0)  # a two-phase payment's default expiry
    # Two-phase payments an ingress process prepared, kept so that their fulfil or abort
    # needs no read of the payment first (0: always read).
    prepared_kept_max: int = Field(default=100_000, ge=0)
    alarm_percent: int = Field(default=80, ge=1, le=100)  # of its cap: a position's alarm
    window_close_interval_s: int = Field(default=0, ge=0)  # 0: the operator closes windows
    gross_ledgers: list[str] = Field(default_factory=list)  # payments settle at once there
    # Per ledger: its rules, the ledger's own (no payer/payee) and pairs' (both).
    fees: dict[str, list[FeeRule]] = Field(default_factory=dict)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="_", env_nested_max_split=1,
        case_sensitive=False, extra="forbid", frozen=True)

    server: ServerSettings
    api: ApiSettings
    data: DataSettings
    shards: ShardSettings
    router: RouterSettings
    wal: WalSettings
    ray: RaySettings
    gc: GcSettings
    monitor: MonitorSettings
    logging: LoggingSettings
    auth: AuthSettings
    hub: HubSettings = Field(default_factory=HubSettings)
    replication: ReplicationSettings = Field(default_factory=ReplicationSettings)
    ledgers: dict[str, int]

    @model_validator(mode="after")
    def _bounds_agree(self) -> Settings:
        if self.shards.count > self.shards.slots:
            raise ValueError("shards.count must be between 0 and shards.slots")
        if self.router.call_commands_max < self.api.batch_items_max:
            raise ValueError("router.call_commands_max must hold a whole batch "
                             "(at least api.batch_items_max)")
        if self.router.shard_queue_commands_max < self.router.call_commands_max:
            raise ValueError("router.shard_queue_commands_max must hold a whole call")
        if not self.ledgers or any(not 0 <= scale <= 18 for scale in self.ledgers.values()):
            raise ValueError("ledgers: at least one, each with a scale from 0 to 18")
        if any(ledger not in self.ledgers for ledger in self.hub.fees):
            raise ValueError("hub.fees: a rule for a ledger that is not configured")
        if any(ledger not in self.ledgers for ledger in self.hub.gross_ledgers):
            raise ValueError("hub.gross_ledgers: a ledger that is not configured")
        if len(self.ledgers) > LEDGERS_MAX:
            raise ValueError(f"ledgers: at most {LEDGERS_MAX} (a shard's account row holds "
                             "its ledger in one byte)")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init), then the environment, then the file; no .env file, no secrets dir.
        environ, config_path = _loading
        return (init_settings, _Environment(settings_cls, environ),
                TomlConfigSettingsSource(settings_cls, toml_file=config_path))


class _Environment(EnvSettingsSource):
    """The PAYSWITCH_* variables of a given mapping (tests pass their own)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Only settings: other PAYSWITCH_* variables (PAYSWITCH_FAILPOINTS) are not ours. A
        # misspelt key inside a section is refused (extra="forbid"), naming it.
        ledgers = f"{ENV_PREFIX}ledgers".lower()
        sections = tuple(f"{ENV_PREFIX}{name}_".lower() for name in Settings.model_fields)
        return {key.lower(): value for key, value in self._environ.items()
                if key.lower().startswith(sections) or key.lower() == ledgers}


# What the load under way reads (pydantic-settings builds its sources in a classmethod).
_loading: tuple[Mapping[str, str], Path] = (os.environ, DEFAULT_CONFIG)


class BadSettings(ValueError):
    """The configuration cannot be used; the message names every bad setting."""


def load_settings(
    config_path: Path = DEFAULT_CONFIG,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the TOML file, apply PAYSWITCH_* variables, then `overrides` ("section.key")."""
    flags: dict[str, dict[str, Any]] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = dotted.split(".")
            flags.setdefault(section, {})[key] = value
    if not config_path.is_file():
        raise BadSettings(f"no configuration file at {config_path}")
    global _loading
    _loading = (os.environ if environ is None else environ, config_path)
    try:
        return Settings.model_validate(flags)
    except ValidationError as error:
        raise BadSettings(_describe(error)) from None
    finally:
        _loading = (os.environ, DEFAULT_CONFIG)


def _describe(error: ValidationError) -> str:
    """One line per bad setting: `section.key: what is wrong (got value)`."""
    lines = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        given = item.get("input")
        shown = f" (got {given!r})" if item["loc"] and not isinstance(given, dict) else ""
        lines.append(f"{where}: {message}{shown}")
    return "; ".join(lines)

"""Configuration: config/default.toml, then PAYSWITCH_* environment variables, then flags.

Every limit is checked at start-up (`Settings.check`), so a bad value stops the switch before
it serves anything.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "PAYSWITCH_"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.toml"


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    body_bytes_max: int
    requests_in_flight_max: int
    retry_after_seconds: int
    access_log: bool


@dataclass(frozen=True)
class ApiSettings:
    batch_items_max: int
    history_page_max: int


@dataclass(frozen=True)
class DataSettings:
    dir: str


@dataclass(frozen=True)
class ShardSettings:
    count: int
    slots: int


@dataclass(frozen=True)
class RouterSettings:
    shard_queue_commands_max: int
    call_commands_max: int
    redrive_interval_ms: int


@dataclass(frozen=True)
class WalSettings:
    map_size_bytes: int
    snapshot_every_events: int


@dataclass(frozen=True)
class RaySettings:
    address: str
    object_store_bytes: int
    include_dashboard: bool
    num_cpus: int


@dataclass(frozen=True)
class GcSettings:
    freeze_after_start: bool
    generation0_threshold: int


@dataclass(frozen=True)
class LoggingSettings:
    level: str
    json: bool


@dataclass(frozen=True)
class MonitorSettings:
    interval_ms: int
    window_s: int


@dataclass(frozen=True)
class Settings:
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
    ledgers: dict[str, int] = field(default_factory=dict)

    @property
    def shard_count(self) -> int:
        return self.shards.count or (os.cpu_count() or 1)

    def check(self) -> Settings:
        """Assert every bound; returns self so it chains after loading."""
        positive = {
            "server.port": self.server.port,
            "server.body_bytes_max": self.server.body_bytes_max,
            "server.requests_in_flight_max": self.server.requests_in_flight_max,
            "server.retry_after_seconds": self.server.retry_after_seconds,
            "api.batch_items_max": self.api.batch_items_max,
            "api.history_page_max": self.api.history_page_max,
            "shards.slots": self.shards.slots,
            "router.shard_queue_commands_max": self.router.shard_queue_commands_max,
            "router.call_commands_max": self.router.call_commands_max,
            "router.redrive_interval_ms": self.router.redrive_interval_ms,
            "wal.map_size_bytes": self.wal.map_size_bytes,
            "wal.snapshot_every_events": self.wal.snapshot_every_events,
            "ray.object_store_bytes": self.ray.object_store_bytes,
            "monitor.interval_ms": self.monitor.interval_ms,
            "monitor.window_s": self.monitor.window_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        if not 0 <= self.shards.count <= self.shards.slots:
            raise ValueError("shards.count must be between 0 and shards.slots")
        if self.router.call_commands_max < self.api.batch_items_max:
            raise ValueError("router.call_commands_max must hold a whole batch")
        if self.router.shard_queue_commands_max < self.router.call_commands_max:
            raise ValueError("router.shard_queue_commands_max must hold a whole call")
        if self.wal.map_size_bytes < 1 << 20:
            raise ValueError("wal.map_size_bytes must be at least 1 MiB")
        if self.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("logging.level must be DEBUG, INFO, WARNING or ERROR")
        if not self.ledgers or any(not 0 <= scale <= 18 for scale in self.ledgers.values()):
            raise ValueError("ledgers: at least one, each with a scale from 0 to 18")
        return self


_SECTION_CLASSES: dict[str, type] = {
    "server": ServerSettings, "api": ApiSettings, "data": DataSettings,
    "shards": ShardSettings, "router": RouterSettings, "wal": WalSettings,
    "ray": RaySettings, "gc": GcSettings, "monitor": MonitorSettings,
    "logging": LoggingSettings,
}


def _coerce(name: str, raw: str, like: Any) -> Any:
    if isinstance(like, bool):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"{name}: expected a boolean, got {raw!r}")
        return raw.lower() in ("1", "true", "yes")
    if isinstance(like, int):
        return int(raw)
    return raw


def load_settings(
    config_path: Path = DEFAULT_CONFIG,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the TOML file, apply PAYSWITCH_* variables, then `overrides` ("section.key")."""
    environ = os.environ if environ is None else environ
    with config_path.open("rb") as file:
        raw = tomllib.load(file)
    sections: dict[str, Any] = {}
    for name, cls in _SECTION_CLASSES.items():
        values = dict(raw.get(name, {}))
        for key, default in list(values.items()):
            env_name = f"{ENV_PREFIX}{name}_{key}".upper()
            if env_name in environ:
                values[key] = _coerce(env_name, environ[env_name], default)
        sections[name] = cls(**values)
    settings = Settings(**sections, ledgers=dict(raw.get("ledgers", {})))
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".")
        updated = replace(getattr(settings, section), **{key: value})
        settings = replace(settings, **{section: updated})
    return settings.check()

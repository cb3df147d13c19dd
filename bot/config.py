"""The bot's configuration: config.toml, read once at start-up and validated.

Every error is a `ConfigError` whose message names the offending key, so a typo in the file
is reported as such instead of being silently ignored.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.fetch import FetchLimits, IpNetwork
from bot.patterns import PatternError, compile_pattern, pattern_problem
from engine.config import (
    ENGINE_LIMITS,
    ConfigError,
    EngineConfig,
    check_keys,
    parse_engine_config,
    take,
)

__all__ = [
    "BotConfig",
    "ConfigError",
    "DiscordConfig",
    "ImagesConfig",
    "LimitsConfig",
    "ModerationConfig",
    "PermissionsConfig",
    "WebConfig",
    "load_config",
    "require_token",
]

TOKEN_ENV = "DISCORD_TOKEN"
ENGINE_TABLES = ("engine", "storage", "models", "versions", "loras")  # parsed by engine.config
BOT_TABLES = ("discord", "limits", "permissions", "moderation", "images", "web")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")  # a [web].listen host that is not an IP


@dataclass(frozen=True)
class DiscordConfig:
    token: str = field(default="", repr=False)  # keep the secret out of logs
    guild_ids: tuple[int, ...] = ()  # slash commands are synced to these at start-up


@dataclass(frozen=True)
class LimitsConfig:
    max_running_per_user: int = 3
    max_queued_per_user: int = 10
    max_queued_total: int = 100
    max_jobs_per_prompt: int = 10  # permutations × --repeat; more than 1 asks for confirmation


@dataclass(frozen=True)
class PermissionsConfig:
    """Who may use the bot. An empty allowed_* tuple allows everyone."""

    allowed_guilds: tuple[int, ...] = ()
    allowed_channels: tuple[int, ...] = ()
    allowed_roles: tuple[int, ...] = ()
    allow_dms: bool = False
    admins: tuple[int, ...] = ()  # user ids
    admin_roles: tuple[int, ...] = ()
    buttons_owner_only: bool = False  # Midjourney lets anyone press a grid's buttons


@dataclass(frozen=True)
class ModerationConfig:
    banned_words: tuple[str, ...] = ()  # whole words, case-insensitive
    banned_patterns: tuple[str, ...] = ()  # regular expressions, case-insensitive


@dataclass(frozen=True)
class ImagesConfig:
    """Fetching image prompts (bot/fetch.py)."""

    # CIDRs the bot may fetch from although they are private (an owner's LAN image server)
    allowed_networks: tuple[IpNetwork, ...] = ()
    max_mb: int = 20  # the largest image file fetched

    def limits(self) -> FetchLimits:
        return FetchLimits(
            max_bytes=self.max_mb * 1024 * 1024, allowed_networks=self.allowed_networks
        )


@dataclass(frozen=True)
class WebConfig:
    """The browser region editor of Vary (Region) (bot/web.py); off unless public_url is set."""

    host: str = "127.0.0.1"  # [web].listen = "host:port": where the server binds
    port: int = 8080
    public_url: str = ""  # what users reach (a reverse proxy's address), without a trailing /
    secret: str = field(default="", repr=False)  # signs links; "": one kept in the storage dir

    @property
    def enabled(self) -> bool:
        return bool(self.public_url)


@dataclass(frozen=True)
class BotConfig:
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    permissions: PermissionsConfig = field(default_factory=PermissionsConfig)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    web: WebConfig = field(default_factory=WebConfig)
    path: Path | None = field(default=None, compare=False)  # the file it came from, for messages

    @property
    def database(self) -> Path:
        """The SQLite file of `bot.store.Store`."""
        return self.engine.storage / "bot.sqlite3"


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> BotConfig:
    """Read and validate `path` (None: every default). $DISCORD_TOKEN wins over [discord].token."""
    env = os.environ if env is None else env
    data = _read_toml(path) if path is not None else {}
    base_dir = path.parent if path is not None else Path()
    _check_tables(data)
    return BotConfig(
        discord=_parse_discord(_table(data, "discord"), env),
        engine=parse_engine_config(data, base_dir),
        limits=_parse_limits(_table(data, "limits")),
        permissions=_parse_permissions(_table(data, "permissions")),
        moderation=_parse_moderation(_table(data, "moderation")),
        images=_parse_images(_table(data, "images")),
        web=_parse_web(_table(data, "web")),
        path=path,
    )


def require_token(config: BotConfig) -> str:
    if not config.discord.token:
        where = config.path or "config.toml"
        raise ConfigError(f"no Discord token: set {TOKEN_ENV} or [discord].token in {where}")
    return config.discord.token


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None


def _check_tables(data: Mapping[str, Any]) -> None:
    known = ENGINE_TABLES + BOT_TABLES
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown table [{unknown[0]}]; the tables are: {', '.join(f'[{t}]' for t in known)}"
        )


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{name}] must be a table")
    return table


def _ids(table: Mapping[str, Any], key: str, where: str) -> tuple[int, ...]:
    """A list of Discord ids (snowflakes), written as TOML integers."""
    values = take(table, key, list, [], where)
    for i, value in enumerate(values):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}.{key}[{i}] must be a Discord id (a number), got {value!r}")
    return tuple(values)


def _strings(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = take(table, key, list, [], where)
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}.{key}[{i}] must be a non-empty string, got {value!r}")
    return tuple(values)


def _count(table: Mapping[str, Any], key: str, default: int, minimum: int, where: str) -> int:
    value = take(table, key, int, default, where)
    if value < minimum:
        raise ConfigError(f"{where}.{key} must be {minimum} or more, got {value}")
    return value


def _parse_discord(table: Mapping[str, Any], env: Mapping[str, str]) -> DiscordConfig:
    check_keys(table, {"token", "guild_ids"}, "discord")
    token = env.get(TOKEN_ENV, "").strip() or take(table, "token", str, "", "discord").strip()
    return DiscordConfig(token=token, guild_ids=_ids(table, "guild_ids", "discord"))


def _parse_limits(table: Mapping[str, Any]) -> LimitsConfig:
    where = "limits"
    bot_keys = {
        "max_running_per_user", "max_queued_per_user", "max_queued_total", "max_jobs_per_prompt"
    }  # fmt: skip
    check_keys(table, bot_keys | set(ENGINE_LIMITS), where)  # engine.config reads the others
    return LimitsConfig(
        max_running_per_user=_count(table, "max_running_per_user", 3, 1, where),
        max_queued_per_user=_count(table, "max_queued_per_user", 10, 0, where),
        max_queued_total=_count(table, "max_queued_total", 100, 0, where),
        max_jobs_per_prompt=_count(table, "max_jobs_per_prompt", 10, 1, where),
    )


def _parse_permissions(table: Mapping[str, Any]) -> PermissionsConfig:
    where = "permissions"
    check_keys(
        table,
        {
            "allowed_guilds",
            "allowed_channels",
            "allowed_roles",
            "allow_dms",
            "admins",
            "admin_roles",
            "buttons_owner_only",
        },
        where,
    )
    return PermissionsConfig(
        allowed_guilds=_ids(table, "allowed_guilds", where),
        allowed_channels=_ids(table, "allowed_channels", where),
        allowed_roles=_ids(table, "allowed_roles", where),
        admins=_ids(table, "admins", where),
        admin_roles=_ids(table, "admin_roles", where),
        allow_dms=take(table, "allow_dms", bool, False, where),
        buttons_owner_only=take(table, "buttons_owner_only", bool, False, where),
    )


def _parse_moderation(table: Mapping[str, Any]) -> ModerationConfig:
    where = "moderation"
    check_keys(table, {"banned_words", "banned_patterns"}, where)
    patterns = _strings(table, "banned_patterns", where)
    for i, pattern in enumerate(patterns):
        try:  # fail at start-up, not on the first prompt
            compile_pattern(pattern)
        except PatternError as e:
            raise ConfigError(
                f"{where}.banned_patterns[{i}] is not a pattern the linear-time engine (RE2) can "
                f"run: {pattern_problem(e)} (lookarounds and backreferences are not supported)"
            ) from None
    return ModerationConfig(
        banned_words=_strings(table, "banned_words", where),
        banned_patterns=patterns,
    )


def _parse_images(table: Mapping[str, Any]) -> ImagesConfig:
    where = "images"
    check_keys(table, {"allowed_networks", "max_mb"}, where)
    networks = []
    for i, text in enumerate(_strings(table, "allowed_networks", where)):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                f"{where}.allowed_networks[{i}] is not a network (CIDR such as "
                f"192.168.1.0/24 or 10.0.0.5/32), got {text!r}"
            ) from None
    return ImagesConfig(
        allowed_networks=tuple(networks), max_mb=_count(table, "max_mb", 20, 1, where)
    )


def _parse_web(table: Mapping[str, Any]) -> WebConfig:
    where = "web"
    check_keys(table, {"listen", "public_url", "secret"}, where)
    host, port = _listen_address(take(table, "listen", str, "127.0.0.1:8080", where).strip())
    return WebConfig(
        host=host,
        port=port,
        public_url=_public_url(take(table, "public_url", str, "", where).strip()),
        secret=take(table, "secret", str, "", where).strip(),
    )


def _listen_address(text: str) -> tuple[str, int]:
    """ "host:port" (an IPv6 host in brackets: "[::1]:8080") as (host, port)."""
    problem = f"web.listen must be host:port such as 127.0.0.1:8080 or [::1]:8080, got {text!r}"
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ip(host, version=6):
            raise ConfigError(problem)
    elif not (_is_ip(host, version=4) or _HOSTNAME.fullmatch(host)):
        raise ConfigError(problem)
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{problem} (a port from 1 to 65535)")
    return host, int(port)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _public_url(text: str) -> str:
    if not text:
        return ""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"web.public_url must be an http:// or https:// address such as "
            f"https://bot.example.com, got {text!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"web.public_url must have no ?query or #fragment, got {text!r}")
    return text.rstrip("/")

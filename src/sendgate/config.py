"""Gateway configuration: a YAML file, then `SENDGATE_<KEY>` environment overrides.

Every top-level key can be overridden by an environment variable named after it
in upper case. The variable's value is read as YAML, so lists and objects work
too (`SENDGATE_ACCOUNTS='[{phone_number_id: "1", waba_id: "2"}]'`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sendgate.options import (
    AlertOptions,
    TemplateSyncOptions,
    WebhookOptions,
    parse_alerts,
    parse_template_sync,
    parse_webhooks,
)

__all__ = [
    "Account", "Config", "ConfigError", "LogOptions", "PassthroughRule", "ReviewerToken", "load_config", "portfolio_of",
]  # fmt: skip


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key."""


@dataclass(frozen=True)
class Account:
    phone_number_id: str
    waba_id: str
    name: str | None = None
    markets: tuple[str, ...] | None = None  # ISO 3166 alpha-2; None means every market
    # Digits of the number as Meta's webhooks show it (phone_number_quality_update names the number
    # only so); learned from message webhooks when not configured.
    display_phone_number: str | None = None
    # Meta enabled Direct Send for this WABA: free-form text/interactive with a top-level
    # `category` ("utility" | "authentication") is a business-initiated message of that category
    # (Meta: direct-send/send-utility-and-authentication-messages). Meta answers 100 otherwise.
    direct_send: bool = False
    # The business portfolio the number's WABA belongs to: Meta's messaging limit is per portfolio
    # (FACTS.md §12). None: the WABA id stands for it (`portfolio_id`).
    portfolio: str | None = None
    # Meta's throughput per number: 80 messages/s by default, 20 for a number shared with the
    # WhatsApp Business app (coexistence: the operator sets 20), up to 1,000 after an upgrade
    # (FACTS.md §3; a THROUGHPUT_UPGRADE webhook raises it, see docs/input.md).
    throughput_mps: int = 80
    # The portfolio's messaging limit (unique users reached outside a window in 24 h), until Meta
    # reports one (`business_capability_update` wins); -1 unlimited, None unknown (no limit applied).
    messaging_limit: int | None = None

    @property
    def portfolio_id(self) -> str:
        return self.portfolio or self.waba_id


MAX_THROUGHPUT_MPS = 1000  # Meta's highest throughput per number (FACTS.md §3)


@dataclass(frozen=True)
class PassthroughRule:
    """A non-send Graph path the gateway forwards: `method` (or `*`) and a path pattern.

    The pattern is matched against the path without its version segment;
    `{name}` matches one segment and a trailing `*` matches the rest.
    """

    method: str
    path: str


@dataclass(frozen=True)
class LogOptions:
    level: str = "INFO"
    json_stdout: bool = False  # one JSON line per decision on stdout, for log shippers
    keep_allowed_content: bool = False  # rejected sends always keep their content
    mask_recipients: bool = False
    retention_days: int | None = None  # decision records older than this are pruned; None keeps them forever


@dataclass(frozen=True)
class ReviewerToken:
    """A sign-in token of the review pages (`/admin/`): read the decision log and add review notes, nothing else."""

    name: str  # who the review trail names
    token: str = field(repr=False)


DEFAULT_PASSTHROUGH = (
    PassthroughRule("GET", "*"),
    PassthroughRule("POST", "/{phone_number_id}/media"),
)


@dataclass(frozen=True)
class Config:
    listen: str = "127.0.0.1:8080"
    upstream_url: str = "https://graph.facebook.com"
    state: str = "sqlite:///.sendgate/sendgate.db"
    policy_dir: str = "policies"
    mode: str = "enforce"
    admin_token: str | None = None
    accounts: tuple[Account, ...] = ()
    allow_unknown_accounts: bool = False
    on_engine_error: str = "deny"
    engine: str = "embedded"  # embedded (regorus in-process) | opa (an OPA server at opa_url)
    opa_url: str = "http://127.0.0.1:8181"
    opa_policies: str = "push"  # push: sendgate loads policy_dir into OPA | bundle: OPA loads its own bundle
    engine_timeout: float = 1.0  # seconds an OPA decision may take before on_engine_error applies
    policy_watch: bool = True  # reload when a file under policy_dir changes (polled every second)
    passthrough: tuple[PassthroughRule, ...] = DEFAULT_PASSTHROUGH
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 32
    upstream_timeout: float = 30.0
    admission_timeout: float = 5.0  # seconds a send may wait for another send to the same recipient
    log: LogOptions = field(default_factory=LogOptions)
    reviewer_tokens: tuple[ReviewerToken, ...] = ()
    session_ttl: int = 8 * 3600  # seconds a review-page sign-in lasts
    redis_url: str | None = None  # redis://host:port/db: review sessions and the guessing throttle, shared
    workers: int = 1  # `serve` processes sharing the listening port (more than one: PostgreSQL and redis_url)
    webhooks: WebhookOptions = field(default_factory=WebhookOptions)
    template_sync: TemplateSyncOptions = field(default_factory=TemplateSyncOptions)
    alerts: AlertOptions = field(default_factory=AlertOptions)

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def account(self, phone_number_id: str) -> Account | None:
        return self._accounts_by_id.get(phone_number_id)

    @property
    def _accounts_by_id(self) -> dict[str, Account]:
        # Frozen dataclass: cache the index on first use.
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {a.phone_number_id: a for a in self.accounts}
            object.__setattr__(self, "_index", cached)
        return cached


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# Sections parsed in their own modules (`ValueError` naming the key).
_SECTION_PARSERS = {"webhooks": parse_webhooks, "template_sync": parse_template_sync, "alerts": parse_alerts}


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read the YAML file (if any), apply `SENDGATE_<KEY>` overrides, then `overrides` (command-line
    flags, e.g. `serve --workers`), and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of keys")
        raw.update(loaded)
    environ = os.environ if env is None else env
    for key in _FIELDS:
        value = environ.get(f"SENDGATE_{key.upper()}")
        if value is not None:
            try:
                raw[key] = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ConfigError(f"SENDGATE_{key.upper()}: not valid YAML: {exc}") from exc
    raw.update(overrides or {})
    return _build(raw)


def _build(raw: dict[str, Any]) -> Config:
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "accounts":
            values[key] = tuple(_account(i, a) for i, a in enumerate(value or []))
        elif key == "passthrough":
            values[key] = tuple(_passthrough(i, p) for i, p in enumerate(value or []))
        elif key == "log":
            values[key] = _log_options(value or {})
        elif key in ("admin_token", "redis_url"):
            values[key] = None if value in (None, "") else str(value)
        elif key == "reviewer_tokens":
            values[key] = _reviewer_tokens(value)
        elif key in ("session_ttl", "workers"):
            values[key] = _int(key, value)
        elif key in _SECTION_PARSERS:
            try:
                values[key] = _SECTION_PARSERS[key](value)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        elif key in ("allow_unknown_accounts",):
            values[key] = _bool(key, value)
        elif key in ("max_body_bytes", "max_json_depth"):
            values[key] = _int(key, value)
        elif key in ("upstream_timeout", "engine_timeout", "admission_timeout"):
            values[key] = _float(key, value)
        elif key == "policy_watch":
            values[key] = _bool(key, value)
        else:
            values[key] = str(value)
    config = Config(**values)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    if config.mode not in ("enforce", "shadow"):
        raise ConfigError(f"mode must be 'enforce' or 'shadow', got {config.mode!r}")
    if config.on_engine_error not in ("deny", "allow"):
        raise ConfigError(f"on_engine_error must be 'deny' or 'allow', got {config.on_engine_error!r}")
    if config.engine not in ("embedded", "opa"):
        raise ConfigError(f"engine must be 'embedded' or 'opa', got {config.engine!r}")
    if config.opa_policies not in ("push", "bundle"):
        raise ConfigError(f"opa_policies must be 'push' or 'bundle', got {config.opa_policies!r}")
    if not re.fullmatch(r"https?://[^/?#]+/?", config.opa_url):
        raise ConfigError(f"opa_url must be a scheme, host and port only, got {config.opa_url!r}")
    if config.engine_timeout <= 0:
        raise ConfigError("engine_timeout must be a positive number of seconds")
    if config.admission_timeout <= 0:
        raise ConfigError("admission_timeout must be a positive number of seconds")
    if not re.fullmatch(r"https?://[^/?#]+/?", config.upstream_url):
        raise ConfigError(f"upstream_url must be a scheme and host only, got {config.upstream_url!r}")
    if ":" not in config.listen or not config.listen.rsplit(":", 1)[1].isdigit():
        raise ConfigError(f"listen must be host:port, got {config.listen!r}")
    # Only the form: which schemes there are, and what follows them, is `open_store`'s to say.
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*://.+", config.state):
        raise ConfigError(f"state must be a URL such as sqlite:///path, got {config.state!r}")
    if config.redis_url is not None and not re.fullmatch(r"redis://[^/?#]+(/\d+)?/?", config.redis_url):
        raise ConfigError(f"redis_url must be redis://host:port/db, got {config.redis_url!r}")
    _validate_workers(config)
    _validate_portfolios(config)
    if config.max_body_bytes <= 0 or config.max_json_depth <= 0:
        raise ConfigError("max_body_bytes and max_json_depth must be positive")
    if config.session_ttl <= 0:
        raise ConfigError("session_ttl must be a positive number of seconds")
    if config.admin_token is not None and any(r.token == config.admin_token for r in config.reviewer_tokens):
        raise ConfigError("reviewer_tokens must differ from admin_token")


def _validate_portfolios(config: Config) -> None:
    """A WABA belongs to one portfolio: Meta's webhooks name the WABA, and its limit is the portfolio's."""
    seen: dict[str, str] = {}
    for account in config.accounts:
        known = seen.setdefault(account.waba_id, account.portfolio_id)
        if known != account.portfolio_id:
            raise ConfigError(
                f"accounts: WABA {account.waba_id} is in portfolio {known} and {account.portfolio_id}; a WABA belongs to one"
            )
    object.__setattr__(config, "_portfolios", seen)


def portfolio_of(config: Config, waba_id: str) -> str:
    """The portfolio of a WABA: the configured one, else the WABA id itself."""
    found: dict[str, str] = config.__dict__.get("_portfolios") or {a.waba_id: a.portfolio_id for a in config.accounts}
    return found.get(waba_id, waba_id)


MAX_WORKERS = 64


def _validate_workers(config: Config) -> None:
    """Several processes need state they all share, and their counters and sessions in Redis."""
    workers = config.workers
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"workers must be an integer from 1 to {MAX_WORKERS}, got {workers}")
    if workers == 1:
        return
    if not config.state.startswith("postgresql://"):
        raise ConfigError(
            f"workers: {workers} processes need state they share: set state: postgresql://user@host:port/db "
            f"(state {config.state.partition('://')[0]}:// is one process's), or workers: 1"
        )
    if config.redis_url is None:
        raise ConfigError(
            f"workers: {workers} processes on PostgreSQL share their rate counters, alert counts and review "
            "sessions through Redis: set redis_url: redis://host:port/db, or workers: 1"
        )


def _account(i: int, value: Any) -> Account:
    if not isinstance(value, dict) or "phone_number_id" not in value or "waba_id" not in value:
        raise ConfigError(f"accounts[{i}] needs phone_number_id and waba_id")
    extra = set(value) - {
        "phone_number_id", "waba_id", "name", "markets", "display_phone_number", "direct_send", "portfolio",
        "throughput_mps", "messaging_limit",
    }  # fmt: skip
    if extra:
        raise ConfigError(f"accounts[{i}]: unknown keys {sorted(extra)}")
    markets = value.get("markets")
    if markets is not None:
        if not isinstance(markets, list) or not all(isinstance(m, str) and len(m) == 2 for m in markets):
            raise ConfigError(f"accounts[{i}].markets must be a list of ISO country codes")
        markets = tuple(m.upper() for m in markets)
    name = value.get("name")
    display = value.get("display_phone_number")
    display = None if display is None else re.sub(r"\D", "", str(display)) or None
    direct_send = value.get("direct_send", False)
    if not isinstance(direct_send, bool):
        raise ConfigError(f"accounts[{i}].direct_send must be true or false")
    portfolio = value.get("portfolio")
    throughput = value.get("throughput_mps", 80)
    if isinstance(throughput, bool) or not isinstance(throughput, int) or not 1 <= throughput <= MAX_THROUGHPUT_MPS:
        raise ConfigError(f"accounts[{i}].throughput_mps must be an integer from 1 to {MAX_THROUGHPUT_MPS}, got {throughput!r}")
    limit = value.get("messaging_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or (limit < 1 and limit != -1)):
        raise ConfigError(f"accounts[{i}].messaging_limit must be a positive integer, -1 (unlimited) or null, got {limit!r}")
    return Account(
        str(value["phone_number_id"]), str(value["waba_id"]), None if name is None else str(name), markets, display,
        direct_send, None if portfolio in (None, "") else str(portfolio), throughput, limit,
    )  # fmt: skip


def _reviewer_tokens(value: Any) -> tuple[ReviewerToken, ...]:
    """A list of tokens, each a string or `{name, token}`; a bare string is named `reviewer<n>`."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError("reviewer_tokens must be a list")
    tokens: list[ReviewerToken] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            extra = set(item) - {"name", "token"}
            if extra:
                raise ConfigError(f"reviewer_tokens[{i}]: unknown keys {sorted(extra)}")
            name, token = item.get("name"), item.get("token")
        else:
            name, token = f"reviewer{i + 1}", item
        if not isinstance(token, str) or not token:
            raise ConfigError(f"reviewer_tokens[{i}]: the token must be a non-empty string")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"reviewer_tokens[{i}]: name must be a non-empty string")
        if name.strip() == "admin":
            raise ConfigError(f"reviewer_tokens[{i}]: 'admin' names the admin token; choose another name")
        tokens.append(ReviewerToken(name.strip(), token))
    if len({t.token for t in tokens}) != len(tokens):
        raise ConfigError("reviewer_tokens: every token must be different")
    if len({t.name for t in tokens}) != len(tokens):
        raise ConfigError("reviewer_tokens: every name must be different")
    return tuple(tokens)


def _passthrough(i: int, value: Any) -> PassthroughRule:
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        raise ConfigError(f"passthrough[{i}] needs a path")
    return PassthroughRule(str(value.get("method", "*")).upper(), value["path"])


def _log_options(value: Any) -> LogOptions:
    if not isinstance(value, dict):
        raise ConfigError("log must be a mapping")
    known = {f.name for f in dataclasses.fields(LogOptions)}
    extra = set(value) - known
    if extra:
        raise ConfigError(f"log: unknown keys {sorted(extra)}")
    return LogOptions(
        level=str(value.get("level", "INFO")).upper(),
        json_stdout=_bool("log.json_stdout", value.get("json_stdout", False)),
        keep_allowed_content=_bool("log.keep_allowed_content", value.get("keep_allowed_content", False)),
        mask_recipients=_bool("log.mask_recipients", value.get("mask_recipients", False)),
        retention_days=_retention_days(value.get("retention_days")),
    )


def _retention_days(value: Any) -> int | None:
    if value is None:
        return None
    days = _int("log.retention_days", value)
    if days <= 0:
        raise ConfigError(f"log.retention_days must be a positive number of days or null, got {days}")
    return days


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _int(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{key} must be an integer, got {value!r}")


def _float(key: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{key} must be a number, got {value!r}")

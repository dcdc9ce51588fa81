"""The `webhooks`, `template_sync` and `alerts` config keys.

The ground floor with `sendgate.config`, which imports them: nothing of ours is imported here.
Parsers raise `ValueError` naming the key; `sendgate.config` turns that into a `ConfigError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METRICS",
    "AlertOptions",
    "TemplateSyncOptions",
    "Threshold",
    "WebhookOptions",
    "parse_alerts",
    "parse_template_sync",
    "parse_webhooks",
]

_URL = re.compile(r"https?://[^\s/?#]+(/[^\s]*)?")
_VERSION = re.compile(r"v\d+\.\d+")
_RESERVED_PREFIXES = ("/admin", "/metrics", "/healthz", "/readyz")


@dataclass(frozen=True)
class WebhookOptions:
    """Meta's webhook path through the gateway. Off (404) until `app_secret` is set."""

    path: str = "/webhook"
    verify_token: str | None = field(default=None, repr=False)
    app_secret: str | None = field(default=None, repr=False)
    forward_to: tuple[str, ...] = ()  # the app's own webhook URLs, each gets the raw body and signature
    forward_timeout: float = 10.0  # seconds per forward; Meta waits a few seconds at most
    max_body_bytes: int = 8 * 1024 * 1024  # Meta's payloads are at most ~3 MB

    @property
    def enabled(self) -> bool:
        return self.app_secret is not None


@dataclass(frozen=True)
class TemplateSyncOptions:
    """`GET /{api_version}/{waba_id}/message_templates` through the upstream, every `interval` seconds."""

    token: str | None = field(default=None, repr=False)  # a system user token with whatsapp_business_management
    interval: float | None = None  # seconds between background syncs; None: off (sync with the CLI)
    api_version: str = "v23.0"
    wabas: tuple[str, ...] = ()  # empty: every waba_id under `accounts`
    page_size: int = 100


METRICS = frozenset({"errors", "rejections", "webhook_failures"})


@dataclass(frozen=True)
class Threshold:
    """One early warning, evaluated per account over a rolling window.

    `metric`: `errors` (Meta error codes, from send responses and failed status webhooks;
    `codes` narrows them), `rejections` (policy denials and deferrals; `rules` narrows them) or
    `webhook_failures` (webhooks sendgate could not apply or relay). It fires when the window
    holds at least `count` of them, or (with `rate`) more than `rate` times the window's sends
    once there were at least `min_sends`. `pause_marketing` also pauses marketing templates on
    the account until an operator clears it (admin API).
    """

    name: str
    metric: str = "errors"
    codes: tuple[int, ...] = ()
    rules: tuple[str, ...] = ()
    count: int | None = None
    rate: float | None = None
    min_sends: int = 20
    window: float = 3600.0
    pause_marketing: bool = False


DEFAULT_THRESHOLDS = (
    # Meta's own early signs of a quality problem: users not reached "to maintain healthy
    # ecosystem engagement", or undeliverable.
    Threshold("undeliverable_rate", "errors", codes=(131049, 131026), rate=0.05),
    # Spam rate limit (recipients block or report the messages) or a policy block: stop and look,
    # and pause marketing (a campaign they report) until an operator clears it.
    Threshold("spam_or_policy_block", "errors", codes=(131048, 368), count=1, pause_marketing=True),
)


@dataclass(frozen=True)
class AlertOptions:
    url: str | None = None  # POST a JSON alert here when an episode starts and when it ends
    timeout: float = 5.0
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS


def _mapping(key: str, value: Any, known: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping")
    extra = set(value) - known
    if extra:
        raise ValueError(f"{key}: unknown keys {sorted(extra)}")
    return value


def _secret(key: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError(f"{key} must be a string")
    return str(value)


def _number(key: str, value: Any, *, positive: bool = True) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (positive and value <= 0):
        raise ValueError(f"{key} must be a positive number, got {value!r}")
    return float(value)


def _int(key: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key} must be an integer of at least {minimum}, got {value!r}")
    return value


def _url(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _URL.fullmatch(value):
        raise ValueError(f"{key} must be an http(s) URL, got {value!r}")
    return value


def parse_webhooks(value: Any) -> WebhookOptions:
    raw = _mapping(
        "webhooks", value, {"path", "verify_token", "app_secret", "forward_to", "forward_timeout", "max_body_bytes"}
    )
    path = raw.get("path", "/webhook")
    if not isinstance(path, str) or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", path):
        raise ValueError(f"webhooks.path must be an absolute path like /webhook, got {path!r}")
    first = path.split("/")[1]
    if _VERSION.fullmatch(first) or any(path == p or path.startswith(p + "/") for p in _RESERVED_PREFIXES):
        raise ValueError(f"webhooks.path {path!r} would shadow a Graph or gateway path")
    forward = raw.get("forward_to") or []
    if isinstance(forward, str):
        forward = [forward]
    if not isinstance(forward, list):
        raise ValueError("webhooks.forward_to must be a list of URLs")
    return WebhookOptions(
        path=path,
        verify_token=_secret("webhooks.verify_token", raw.get("verify_token")),
        app_secret=_secret("webhooks.app_secret", raw.get("app_secret")),
        forward_to=tuple(_url(f"webhooks.forward_to[{i}]", u) for i, u in enumerate(forward)),
        forward_timeout=_number("webhooks.forward_timeout", raw.get("forward_timeout", 10.0)),
        max_body_bytes=_int("webhooks.max_body_bytes", raw.get("max_body_bytes", 8 * 1024 * 1024)),
    )


def parse_template_sync(value: Any) -> TemplateSyncOptions:
    raw = _mapping("template_sync", value, {"token", "interval", "api_version", "wabas", "page_size"})
    interval = raw.get("interval")
    if interval in (None, 0, False, "off"):
        interval = None
    else:
        interval = _number("template_sync.interval", interval)
    version = str(raw.get("api_version", "v23.0"))
    if not _VERSION.fullmatch(version):
        raise ValueError(f"template_sync.api_version must look like v23.0, got {version!r}")
    wabas = raw.get("wabas") or []
    if not isinstance(wabas, list):
        raise ValueError("template_sync.wabas must be a list of WABA ids")
    return TemplateSyncOptions(
        token=_secret("template_sync.token", raw.get("token")),
        interval=interval,
        api_version=version,
        wabas=tuple(str(w) for w in wabas),
        page_size=_int("template_sync.page_size", raw.get("page_size", 100)),
    )


def _threshold(i: int, value: Any) -> Threshold:
    key = f"alerts.thresholds[{i}]"
    raw = _mapping(
        key, value, {"name", "metric", "codes", "rules", "count", "rate", "min_sends", "window", "pause_marketing"}
    )
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
        raise ValueError(f"{key}.name must be a word (letters, digits, _ . : -)")
    metric = raw.get("metric", "errors")
    if metric not in METRICS:
        raise ValueError(f"{key}.metric must be one of {sorted(METRICS)}")
    codes = raw.get("codes") or []
    rules = raw.get("rules") or []
    if not isinstance(codes, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
        raise ValueError(f"{key}.codes must be a list of Meta error codes")
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise ValueError(f"{key}.rules must be a list of rule ids")
    count = raw.get("count")
    rate = raw.get("rate")
    if (count is None) == (rate is None):
        raise ValueError(f"{key} needs exactly one of count or rate")
    if count is not None:
        count = _int(f"{key}.count", count)
    if rate is not None:
        rate = _number(f"{key}.rate", rate)
        if rate >= 1:
            raise ValueError(f"{key}.rate is a fraction of sends, below 1 (0.05 is 5%)")
    pause = raw.get("pause_marketing", False)
    if not isinstance(pause, bool):
        raise ValueError(f"{key}.pause_marketing must be true or false")
    return Threshold(
        name=name,
        metric=metric,
        codes=tuple(codes),
        rules=tuple(rules),
        count=count,
        rate=rate,
        min_sends=_int(f"{key}.min_sends", raw.get("min_sends", 20)),
        window=_number(f"{key}.window", raw.get("window", 3600)),
        pause_marketing=pause,
    )


def parse_alerts(value: Any) -> AlertOptions:
    raw = _mapping("alerts", value, {"url", "timeout", "thresholds"})
    url = raw.get("url")
    thresholds = raw.get("thresholds")
    parsed: tuple[Threshold, ...]
    if thresholds is None:
        parsed = DEFAULT_THRESHOLDS
    elif isinstance(thresholds, list):
        parsed = tuple(_threshold(i, t) for i, t in enumerate(thresholds))
    else:
        raise ValueError("alerts.thresholds must be a list")
    names = [t.name for t in parsed]
    if len(set(names)) != len(names):
        raise ValueError("alerts.thresholds: every name must be different")
    return AlertOptions(
        url=None if url in (None, "") else _url("alerts.url", url),
        timeout=_number("alerts.timeout", raw.get("timeout", 5.0)),
        thresholds=parsed,
    )

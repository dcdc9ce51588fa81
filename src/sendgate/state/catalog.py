"""Reading Graph `message_templates` entries: validation, placeholder counts, and the facts
the policies read of a template (docs/input.md `template`).

A catalog entry is Graph's shape, plus what Meta's status webhooks said that Graph's listing
does not carry (a flag and its disable date, a lock, the status before an archive), kept under
the entry's `sendgate` key (`rules.apply_status_event`).
"""

from __future__ import annotations

import re
from typing import Any

from sendgate.state.base import InvalidRecord

__all__ = [
    "OWN_KEY",
    "count_placeholders",
    "effective_status",
    "parameter_names",
    "template_details",
    "validate_catalog",
]

OWN_KEY = "sendgate"  # what sendgate keeps in a catalog entry beside Graph's fields
# Statuses Meta reports that leave a template sendable: FLAGGED stays approved until its disable
# date, LOCKED only stops edits (Meta, message_template_status_update reference).
_SENDABLE_AS_APPROVED = frozenset({"FLAGGED", "LOCKED"})

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "DOCUMENT", "LOCATION"})
# Buttons whose send-time parameter is required. Quick replies and flows take
# optional parameters, so their counts are not checked.
_ONE_PARAM_BUTTONS = frozenset({"COPY_CODE", "CATALOG", "MPM", "OTP"})


def validate_catalog(body: Any) -> list[dict[str, Any]]:
    """Check a `{"data": [...]}` body and return its templates."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise InvalidRecord('templates must be a message_templates body: {"data": [...]}')
    for i, template in enumerate(body["data"]):
        if not isinstance(template, dict):
            raise InvalidRecord(f"data[{i}] must be an object")
        for key in ("name", "language", "status"):
            if not isinstance(template.get(key), str):
                raise InvalidRecord(f"data[{i}].{key} must be a string")
        if not isinstance(template.get("components", []), list):
            raise InvalidRecord(f"data[{i}].components must be a list")
    templates: list[dict[str, Any]] = body["data"]
    return templates


def count_placeholders(template: dict[str, Any]) -> dict[str, int]:
    """Parameters each component needs at send time, keyed as in docs/input.md."""
    counts = {"header": 0, "body": 0}
    for component in template.get("components", []):
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            fmt = str(component.get("format", "TEXT")).upper()
            counts["header"] = 1 if fmt in _MEDIA_HEADERS else _distinct_tokens(component.get("text"))
        elif kind == "BODY":
            counts["body"] = _distinct_tokens(component.get("text"))
            if _code_body(template, component):
                counts["body"] = 1
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons", [])):
                needed = _button_params(button)
                if needed is not None:
                    counts[f"button_{index}"] = needed
    return counts


def _fill_facts(text: str | None) -> dict[str, Any]:
    """What measuring the body once filled in takes, worked out once here rather than per send in
    Rego: its length without the placeholders, and how often each placeholder appears."""
    if text is None:
        return {"fixed_length": None, "placeholder_counts": {}}
    counts: dict[str, int] = {}
    for name in _TOKEN.findall(text):
        counts[name] = counts.get(name, 0) + 1
    return {"fixed_length": len(_TOKEN.sub("", text)), "placeholder_counts": counts}


def _code_body(template: dict[str, Any], component: dict[str, Any]) -> bool:
    """An AUTHENTICATION body as it is created (no text, Meta writes it): it takes the code."""
    return str(template.get("category", "")).upper() == "AUTHENTICATION" and not isinstance(component.get("text"), str)


def _distinct_tokens(text: Any) -> int:
    return len(set(_TOKEN.findall(text))) if isinstance(text, str) else 0


def _button_params(button: dict[str, Any]) -> int | None:
    kind = str(button.get("type", "")).upper()
    if kind == "URL":
        return 1 if _TOKEN.search(str(button.get("url", ""))) else None
    if kind in _ONE_PARAM_BUTTONS:
        return 1
    return None


def parameter_names(text: Any) -> list[str]:
    """The placeholder names of a text (`{{1}}` is "1", `{{first_name}}` "first_name"), each once,
    in order of first appearance."""
    return list(dict.fromkeys(_TOKEN.findall(text))) if isinstance(text, str) else []


def effective_status(template: dict[str, Any]) -> str:
    """The entry's status as the policies read it: FLAGGED and LOCKED are APPROVED (their flag and
    lock are facts of their own, `template_details`)."""
    status = str(template.get("status", "")).upper()
    return "APPROVED" if status in _SENDABLE_AS_APPROVED else status


def _upper(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def template_details(template: dict[str, Any]) -> dict[str, Any]:
    """The facts of one catalog entry beyond status, category and placeholders (docs/input.md
    `template`): quality, flag, lock, parameter format and the components' texts."""
    own = found if isinstance(found := template.get(OWN_KEY), dict) else {}
    status = str(template.get("status", "")).upper()
    score = template.get("quality_score")
    quality = _upper(score.get("score") if isinstance(score, dict) else score)
    header: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    footer: dict[str, Any] | None = None
    buttons: list[dict[str, Any]] = []
    for component in template.get("components", []):
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).upper()
        text = component.get("text") if isinstance(component.get("text"), str) else None
        if kind == "HEADER":
            fmt = _upper(component.get("format")) or "TEXT"
            shown = text if fmt == "TEXT" else None
            header = {"format": fmt, "text": shown, "parameter_names": parameter_names(shown)}
        elif kind == "BODY":
            names = ["1"] if _code_body(template, component) else parameter_names(text)
            body = {"text": text, "parameter_names": names, **_fill_facts(text)}
        elif kind == "FOOTER":
            footer = {"text": text}
        elif kind == "BUTTONS":
            listed = component.get("buttons")
            for index, button in enumerate(listed if isinstance(listed, list) else []):
                if isinstance(button, dict):
                    buttons.append({"index": str(index), "type": _upper(button.get("type"))})
    until = own.get("flagged_until")
    return {
        "quality": quality,
        "flagged": bool(own.get("flagged")) or status == "FLAGGED",
        "flagged_until": until if isinstance(until, (int, float)) and not isinstance(until, bool) else None,
        "locked": bool(own.get("locked")) or status == "LOCKED",
        "parameter_format": _upper(template.get("parameter_format")),
        "components": {"header": header, "body": body, "footer": footer, "buttons": buttons},
    }

"""Reading Graph `message_templates` entries: validation and placeholder counts."""

from __future__ import annotations

import re
from typing import Any

from sendgate.state.base import InvalidRecord

__all__ = ["count_placeholders", "validate_catalog"]

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
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons", [])):
                needed = _button_params(button)
                if needed is not None:
                    counts[f"button_{index}"] = needed
    return counts


def _distinct_tokens(text: Any) -> int:
    return len(set(_TOKEN.findall(text))) if isinstance(text, str) else 0


def _button_params(button: dict[str, Any]) -> int | None:
    kind = str(button.get("type", "")).upper()
    if kind == "URL":
        return 1 if _TOKEN.search(str(button.get("url", ""))) else None
    if kind in _ONE_PARAM_BUTTONS:
        return 1
    return None

"""The Rego unit tests (`policies/*_test.rego`), each one a pytest case, through the embedded engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendgate.policy import PolicyLoadError
from sendgate.policy.base import Decision, EngineError
from sendgate.policy.bundle import PolicyBundle
from sendgate.policy.embedded import EmbeddedEngine, run_rego_tests

from .conftest import POLICIES

BUNDLE = PolicyBundle.load(POLICIES)
RESULTS = {f"{r.test.package}.{r.test.name}": r for r in run_rego_tests(BUNDLE)}
RULE_IDS = [
    "consent.missing", "consent.opted_out", "consent.category", "window.closed", "template.unknown",
    "template.not_approved", "template.paused", "template.language", "template.params", "frequency.marketing",
    "frequency.pair_rate", "content.banned_term", "content.url_domain", "content.length", "content.encrypted",
    "quiet_hours", "account.unknown", "account.market",
    "content.prohibited_commerce", "content.card_number", "content.iban",
    "payload.length", "payload.buttons", "payload.duplicate_button", "payload.list", "payload.location",
    "throughput.exceeded", "messaging_limit.reached", "pacing.same_content",
]


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_rego(name: str) -> None:
    result = RESULTS[name]
    assert result.passed, f"{result.test.file}: {result.error}"


def test_every_rule_has_rego_tests() -> None:
    sources = "\n".join(BUNDLE.modules.values())
    tests = "\n".join(BUNDLE.tests.values())
    for rule in RULE_IDS:
        assert f'"{rule}"' in sources, f"no rule emits {rule}"
    packages = {r.test.package for r in RESULTS.values()}
    for concern in ("consent", "window", "template", "frequency", "content", "quiet_hours", "account", "payload"):
        assert any(concern in p for p in packages), f"no tests for {concern}"
    assert len(RESULTS) >= 2 * len(RULE_IDS)  # each rule firing and not firing, at least
    assert tests


def test_data_is_kept_out_of_code() -> None:
    assert "params" in BUNDLE.data["sendgate"]


def _write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({"main.rego": "package sendgate\n\ndecision := {\n"}, "main.rego"),
        ({"main.rego": "package sendgate\n\ndecision := {}\n", "data.json": "{broken"}, "data.json"),
        ({"main.rego": "package sendgate\n\ndecision := {}\n", "data.json": "[1]"}, "must be an object"),
        ({"main.rego": "package other\n\nx := 1\n"}, "data.sendgate.decision"),
        ({"notes.txt": "hello"}, "no .rego files"),
    ],
)
def test_broken_policy_directories_fail_with_the_reason(tmp_path: Path, files: dict[str, str], needle: str) -> None:
    with pytest.raises(PolicyLoadError, match=needle.replace(".", r"\.")):
        EmbeddedEngine(_write(tmp_path / "p", files))


def test_nested_data_files_land_at_their_directory(tmp_path: Path) -> None:
    root = _write(tmp_path / "p", {"main.rego": "package sendgate\n\ndecision := data.sendgate.extra.lists\n",
                                   "data.json": '{"sendgate": {"params": {}}}',
                                   "sendgate/extra/data.yaml": "lists: {a: 1}\n"})
    assert PolicyBundle.load(root).data == {"sendgate": {"params": {}, "extra": {"lists": {"a": 1}}}}


@pytest.mark.parametrize(
    "value",
    [None, [], {"allow": True, "deny": "no"}, {"allow": True, "deny": [{"rule": "x"}], "defer": [], "warn": []},
     {"allow": False, "deny": [{"message": "no rule id"}]}],
)
def test_malformed_decisions_are_engine_errors(value: object) -> None:
    with pytest.raises(EngineError):
        Decision.from_json(value)


def test_decision_outcomes() -> None:
    deny = Decision.from_json({"allow": False, "deny": [{"rule": "a"}], "defer": [{"rule": "b", "retry_after": 3}],
                               "warn": [], "retry_after": 2.2})
    assert (deny.outcome, deny.retry_after) == ("deny", 3)
    defer = Decision.from_json({"allow": False, "deny": [], "defer": [{"rule": "b"}], "warn": [], "retry_after": None})
    assert (defer.outcome, defer.retry_after) == ("defer", 1)
    assert Decision.from_json({"allow": True, "deny": [], "defer": [], "warn": [{"rule": "w"}]}).outcome == "allow"

"""The embedded engine serves with regorus's register VM, and the interpreter guards it.

The default policies are proved equal on both (tests/test_differential.py, and every decision of
the run is cross-checked: conftest's `every_decision_cross_checked`). These tests take policies
that use the constructs the VM gets wrong, and show what serving does with them: an answer with
an undefined value in it is replaced by the interpreter's; a wrong answer that looks right is
caught by the sampled cross-check, which turns the VM off for that revision; policies the VM
cannot compile are served by the interpreter; a reload starts the VM again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sendgate.policy import embedded
from sendgate.policy.embedded import EmbeddedEngine

from .conftest import POLICIES

DECISION = """package sendgate

deny contains r if {
	some r in input.reasons
}

default allow := false

allow if {
	count(deny) == 0
}

decision := {"allow": allow, "deny": deny, "defer": [], "warn": [], "retry_after": null}
"""

# The same decision, its reasons listed through a comprehension: the VM's undefined value drops
# out of the list but still counts in `allow`, so its answer contradicts itself.
LISTED = DECISION.replace('"deny": deny', '"deny": [r | some r in deny]')

# On the VM, an assignment of an undefined value goes on: `v` is "<undefined>" in the set.
UNDEFINED_IN_ANSWER = DECISION + """
deny contains v if {
	v := input.missing
}
"""

# On the VM, the negation over an undefined value is true: a denial the interpreter never makes.
WRONG_BUT_WELL_FORMED = DECISION + """
deny contains {"rule": "test.negated", "message": "fired"} if {
	v := input.recipient.missing
	not v in ["x"]
}
"""

# `with` outside a test: the VM's compiler does not have it.
NOT_FOR_THE_VM = DECISION + """
deny contains r if {
	r := reason with input as {"x": 1}
}

reason := {"rule": "test.with", "message": "m"} if input.x == 2
"""


def _policies(tmp_path: Path, source: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "main.rego").write_text(source)
    (tmp_path / "data.json").write_text('{"sendgate": {"params": {}}}')
    return tmp_path


async def test_the_default_policies_are_served_by_the_vm(default_engine: EmbeddedEngine) -> None:
    health = await default_engine.health()
    assert health["evaluator"] == "vm" and default_engine.vm_off is None


@pytest.mark.parametrize(
    ("source", "said"),
    [
        (UNDEFINED_IN_ANSWER, "left an undefined value in its answer"),
        (UNDEFINED_IN_ANSWER.replace(DECISION, LISTED), "answer is malformed"),
    ],
)
async def test_a_visibly_wrong_answer_of_the_vm_is_decided_by_the_interpreter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, source: str, said: str
) -> None:
    engine = EmbeddedEngine(_policies(tmp_path, source))
    caplog.set_level(logging.WARNING, "sendgate.policy")
    for _ in range(3):
        decision = await engine.evaluate({"recipient": {"id": "1"}})
        assert decision.outcome == "allow" and decision.deny == []
    assert len([r for r in caplog.records if said in r.getMessage()]) == 1  # once per revision
    assert (await engine.health())["evaluator"] == "vm"  # a visible slip is mended per decision


async def test_the_cross_check_catches_a_wrong_answer_and_turns_the_vm_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "CROSS_CHECK_EVERY", 4)
    engine = EmbeddedEngine(_policies(tmp_path, WRONG_BUT_WELL_FORMED))
    caplog.set_level(logging.ERROR, "sendgate.policy")
    outcomes = [(await engine.evaluate({"recipient": {"id": "16505551234"}})).outcome for _ in range(6)]
    # The VM's three answers go out (the damage the sampling bounds); the fourth is checked,
    # and from then on the interpreter decides.
    assert outcomes == ["deny", "deny", "deny", "allow", "allow", "allow"]
    health = await engine.health()
    assert health["evaluator"] == "interpreter" and "disagreed" in (engine.vm_off or "")
    [error] = [r.getMessage() for r in caplog.records if "disagreed" in r.getMessage()]
    assert '"deny":["test.negated"]' in error and "16505551234" not in error  # rule ids, no number
    # A reload compiles a fresh VM for the new revision.
    (tmp_path / "main.rego").write_text(DECISION)
    await engine.reload()
    assert (await engine.health())["evaluator"] == "vm"
    assert (await engine.evaluate({"reasons": []})).outcome == "allow"
    denied = await engine.evaluate({"reasons": [{"rule": "test.given", "message": "m"}]})
    assert [r["rule"] for r in denied.deny] == ["test.given"]


async def test_policies_the_vm_cannot_compile_are_served_by_the_interpreter(tmp_path: Path) -> None:
    engine = EmbeddedEngine(_policies(tmp_path, NOT_FOR_THE_VM))
    assert (await engine.health())["evaluator"] == "interpreter"
    assert "register VM" in (engine.vm_off or "")
    assert (await engine.evaluate({"x": 2})).outcome == "allow"  # `with` replaced the input: no reason


def test_the_vm_compiles_the_default_policies() -> None:
    from sendgate.policy.bundle import PolicyBundle

    vm = embedded.compile_vm(PolicyBundle.load(POLICIES))
    vm.set_input_json("{}")
    assert '"allow"' in vm.execute()

"""The embedded engine: regorus (Rust Rego) in-process.

Evaluation runs inline on the event loop: it is short, and cheaper there than a
hop to a thread. Loading compiles into a fresh engine and runs the bundle's Rego
tests before the new engine replaces the old one, so a broken policy never serves.

Two evaluators of one bundle: regorus's interpreter (`regorus.Engine`), the
reference, which runs the Rego tests, and its register VM (`regorus.Rvm`), which
serves: 2-2.5x faster per decision, but it lets a body go on past an assignment
of an undefined value, so such a value can reach the answer (as the string
"<undefined>") or be negated into true. The policies test every value they
assign (docs/policies.md, "Writing rules the VM runs the same"), the differential
test proves OPA, the interpreter and the VM equal on generated inputs, and
serving guards the rest: an answer the VM gets wrong in a way that shows
(`"<undefined>"` in it, or not a valid decision) is taken from the interpreter
instead, and one decision in `CROSS_CHECK_EVERY` is evaluated by both; the
first disagreement turns the VM off for that revision (logged as an error).
Policies the VM cannot compile (it has no `with`) are served by the interpreter.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import regorus

from sendgate.policy.base import ENTRYPOINT, Decision, EngineError, PolicyLoadError
from sendgate.policy.bundle import PolicyBundle, RegoTest

__all__ = ["EmbeddedEngine", "TestResult", "check_policy_dir", "compile_bundle", "compile_vm", "run_rego_tests"]

log = logging.getLogger("sendgate.policy")

CROSS_CHECK_EVERY = 64  # one decision in this many is evaluated by the interpreter too
_UNDEFINED = "<undefined>"  # how the VM writes an undefined value into an answer


@dataclass(frozen=True)
class TestResult:
    """One test's outcome, in `opa test`'s terms: PASS, FAIL (false or undefined), ERROR, SKIPPED."""

    test: RegoTest
    status: str
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Nothing wrong: a skipped (`todo_test_*`) test does not stop a reload."""
        return self.status in ("PASS", "SKIPPED")


def _first_line(exc: BaseException) -> str:
    # regorus errors carry a Rust backtrace after the message; keep the message.
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    head = [line for line in lines[:6] if not line.startswith("Stack backtrace")]
    return " ".join(line.strip() for line in head) or type(exc).__name__


def compile_bundle(bundle: PolicyBundle, with_tests: bool = False) -> regorus.Engine:
    engine = regorus.Engine()
    if with_tests:  # every module, tests included, with each further body of a test renamed
        sources = {rel: source for rel, (source, _) in bundle.test_sources().items()}
    else:
        sources = dict(bundle.modules)
    for rel, source in sources.items():
        try:
            engine.add_policy(rel, source)
        except Exception as exc:
            raise PolicyLoadError(f"{rel}: {_first_line(exc)}") from exc
    try:
        engine.add_data_json(orjson.dumps(bundle.data).decode())
    except Exception as exc:
        raise PolicyLoadError(f"data: {_first_line(exc)}") from exc
    return engine


def compile_vm(bundle: PolicyBundle) -> regorus.Rvm:
    """The bundle's entrypoint as a register-VM program, loaded into a VM with the bundle's data.

    Raises PolicyLoadError when the VM's compiler refuses the policies (or panics on them).
    """
    data = orjson.dumps(bundle.data).decode()
    try:
        program = regorus.Program.compile_from_modules(data, list(bundle.modules.items()), [ENTRYPOINT])
        vm = regorus.Rvm()
        vm.load_program(program)
        vm.set_data_json(data)
    except BaseException as exc:  # noqa: BLE001  (a panic of the compiler is a BaseException)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise PolicyLoadError(f"register VM: {_first_line(exc)}") from exc
    return vm


def run_rego_tests(bundle: PolicyBundle) -> list[TestResult]:
    """Run the tests as `opa test` does, through regorus: no input; true passes, false or undefined fails.

    An evaluation error is an ERROR, as in `opa test`; regorus raises errors in a few
    places where OPA is undefined (iterating null, builtin type errors), so such a test
    is an ERROR here and a FAIL there (the policies guard against both).
    """
    engine = compile_bundle(bundle, with_tests=True)
    results = []
    for test in bundle.rego_tests():
        if test.skip:
            results.append(TestResult(test, "SKIPPED"))
            continue
        try:
            value = orjson.loads(engine.eval_rule_as_json(test.path))
        except Exception as exc:
            results.append(TestResult(test, "ERROR", _first_line(exc)))
            continue
        passed = value is True
        results.append(TestResult(test, "PASS" if passed else "FAIL", None if passed else f"evaluated to {value!r}"))
    return results


@dataclass
class _Serving:
    """One revision's evaluators: the interpreter always, the VM when it compiles and agrees."""

    bundle: PolicyBundle
    engine: regorus.Engine
    vm: regorus.Rvm | None
    vm_off: str | None  # why the VM does not serve (None while it does)
    decisions: int = 0  # by the VM
    fallbacks: int = 0  # of those, decided by the interpreter instead (_fall_back)


def _load(policy_dir: Path) -> tuple[PolicyBundle, regorus.Engine]:
    bundle = PolicyBundle.load(policy_dir)
    engine = compile_bundle(bundle)
    _probe(engine)
    return bundle, engine


def _build(policy_dir: Path) -> _Serving:
    bundle, engine = _load(policy_dir)
    try:
        vm: regorus.Rvm | None = compile_vm(bundle)
        vm_off = None
    except PolicyLoadError as exc:
        vm, vm_off = None, str(exc)
        log.warning("policies served by the interpreter: %s", exc)
    return _Serving(bundle, engine, vm, vm_off)


def _check(policy_dir: Path) -> tuple[PolicyBundle | None, str | None]:
    """Load, compile and run the Rego tests, on a worker thread.

    Returns an error text rather than raising: a traceback would carry this
    thread's engines to the loop's thread, and regorus engines must die where
    they were made.
    """
    try:
        bundle, _ = _load(policy_dir)
        failed = [r for r in run_rego_tests(bundle) if not r.passed]
    except PolicyLoadError as exc:
        return None, str(exc)
    if failed:
        names = ", ".join(f"{r.test.package}.{r.test.name}" for r in failed[:5])
        return None, f"{len(failed)} Rego test(s) failed: {names}"
    return bundle, None


def check_policy_dir(policy_dir: str | Path) -> tuple[PolicyBundle | None, str | None]:
    """Load `policy_dir`, compile it and run its Rego tests through regorus (any thread).

    Returns the bundle, or None and the reason. The OPA engine checks a directory
    this way before it pushes it to OPA.
    """
    return _check(Path(policy_dir))


def _probe(engine: regorus.Engine) -> None:
    # The entrypoint must exist; an empty input is enough to find out.
    engine.set_input_json("{}")
    try:
        engine.eval_rule_as_json(ENTRYPOINT)
    except Exception as exc:
        raise PolicyLoadError(f"{ENTRYPOINT}: {_first_line(exc)}") from exc


def _interpret(engine: regorus.Engine, text: str) -> Any:
    try:
        engine.set_input_json(text)
        return orjson.loads(engine.eval_rule_as_json(ENTRYPOINT))
    except Exception as exc:
        raise EngineError(f"policy evaluation failed: {_first_line(exc)}") from exc


def _fall_back(serving: _Serving, text: str, why: str) -> Decision:
    """The interpreter's decision, where the VM's cannot be trusted; logged once per revision."""
    serving.fallbacks += 1
    if serving.fallbacks == 1:
        log.warning("policy revision %s: %s; the interpreter decided (input %s; said once per revision)",
                    serving.bundle.revision, why, _digest(text))
    return Decision.from_json(_interpret(serving.engine, text))


def _rules(answer: Any) -> str:
    # What an answer decided, by rule id only: reasons quote numbers and message text.
    if not isinstance(answer, dict):
        return type(answer).__name__
    return orjson.dumps({k: sorted(str(r.get("rule")) if isinstance(r, dict) else type(r).__name__
                                   for r in answer.get(k) or []) for k in ("deny", "defer", "warn")}).decode()


def _digest(text: str) -> str:
    # The input holds phone numbers and message text: the log names it by a digest only.
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EmbeddedEngine:
    """`PolicyEngine` on regorus, loaded from a policy directory.

    regorus engines are bound to the thread that made them, so the serving
    engine is always compiled on the event loop's thread; the slower Rego test
    run of a reload happens first, on a worker thread, with its own engines.
    """

    def __init__(self, policy_dir: str | Path, *, run_tests: bool = True) -> None:
        self._dir = Path(policy_dir)
        self._run_tests = run_tests
        if run_tests:
            _, error = _check(self._dir)
            if error:
                raise PolicyLoadError(error)
        self._serving = _build(self._dir)

    @property
    def revision(self) -> str:
        return self._serving.bundle.revision

    @property
    def bundle(self) -> PolicyBundle:
        return self._serving.bundle

    @property
    def vm_off(self) -> str | None:
        """Why the register VM does not serve this revision, or None while it does."""
        return self._serving.vm_off

    async def evaluate(self, document: dict[str, Any]) -> Decision:
        serving = self._serving  # a reload swaps the reference, never the evaluators under us
        text = orjson.dumps(document).decode()
        if serving.vm is None:
            return Decision.from_json(_interpret(serving.engine, text))
        serving.decisions += 1
        try:
            serving.vm.set_input_json(text)
            answer = serving.vm.execute()
        except BaseException as exc:  # noqa: BLE001  (a panic too): the interpreter decides, or raises
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return _fall_back(serving, text, f"the register VM failed: {_first_line(exc)}")
        if _UNDEFINED in answer:  # an undefined value the VM let through (or a message quoting it)
            return _fall_back(serving, text, "the register VM left an undefined value in its answer")
        value = orjson.loads(answer)
        try:
            decision = Decision.from_json(value)
        except EngineError as exc:  # malformed: the interpreter's answer is the one to trust, or to refuse
            return _fall_back(serving, text, f"the register VM's answer is malformed ({exc})")
        if serving.decisions % CROSS_CHECK_EVERY == 0:
            reference = _interpret(serving.engine, text)
            if reference != value:
                serving.vm = None
                serving.vm_off = "the register VM disagreed with the interpreter; the interpreter serves"
                log.error("policy revision %s: %s (input %s: VM rules %s, interpreter rules %s)",
                          serving.bundle.revision, serving.vm_off, _digest(text), _rules(value), _rules(reference))
                return Decision.from_json(reference)
        return decision

    async def reload(self) -> str:
        checked = None
        if self._run_tests:
            checked, error = await asyncio.get_running_loop().run_in_executor(None, _check, self._dir)
            if error:
                raise PolicyLoadError(error)
        serving = _build(self._dir)
        if checked is not None and serving.bundle.revision != checked.revision:
            raise PolicyLoadError("policy files changed while their tests ran; reload again")
        self._serving = serving
        log.info("policies loaded: revision %s", serving.bundle.revision)
        return serving.bundle.revision

    async def start(self) -> None:
        return None

    async def params(self) -> dict[str, Any]:
        params = self._serving.bundle.data.get("sendgate", {}).get("params", {})
        return params if isinstance(params, dict) else {}

    async def health(self) -> dict[str, Any]:
        # In-process: serving whenever it exists (a broken reload keeps the old engine).
        return {"ok": True, "engine": "embedded", "revision": self.revision, "detail": None,
                "evaluator": "interpreter" if self._serving.vm is None else "vm"}

    async def close(self) -> None:
        return None

"""The embedded engine: regorus (Rust Rego) in-process.

Evaluation runs inline on the event loop: it is short, and cheaper there than a
hop to a thread. Loading compiles into a fresh engine and runs the bundle's Rego
tests before the new engine replaces the old one, so a broken policy never serves.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import regorus

from sendgate.policy.base import ENTRYPOINT, Decision, EngineError, PolicyLoadError
from sendgate.policy.bundle import PolicyBundle, RegoTest

__all__ = ["EmbeddedEngine", "TestResult", "check_policy_dir", "compile_bundle", "run_rego_tests"]

log = logging.getLogger("sendgate.policy")


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


def _build(policy_dir: Path) -> tuple[PolicyBundle, regorus.Engine]:
    bundle = PolicyBundle.load(policy_dir)
    engine = compile_bundle(bundle)
    _probe(engine)
    return bundle, engine


def _check(policy_dir: Path) -> tuple[PolicyBundle | None, str | None]:
    """Load, compile and run the Rego tests, on a worker thread.

    Returns an error text rather than raising: a traceback would carry this
    thread's engines to the loop's thread, and regorus engines must die where
    they were made.
    """
    try:
        bundle, _ = _build(policy_dir)
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
        self._bundle, self._engine = _build(self._dir)

    @property
    def revision(self) -> str:
        return self._bundle.revision

    @property
    def bundle(self) -> PolicyBundle:
        return self._bundle

    async def evaluate(self, document: dict[str, Any]) -> Decision:
        engine = self._engine  # a reload swaps the reference, never the engine under us
        try:
            engine.set_input_json(orjson.dumps(document).decode())
            value = orjson.loads(engine.eval_rule_as_json(ENTRYPOINT))
        except Exception as exc:
            raise EngineError(f"policy evaluation failed: {_first_line(exc)}") from exc
        return Decision.from_json(value)

    async def reload(self) -> str:
        checked = None
        if self._run_tests:
            checked, error = await asyncio.get_running_loop().run_in_executor(None, _check, self._dir)
            if error:
                raise PolicyLoadError(error)
        bundle, engine = _build(self._dir)
        if checked is not None and bundle.revision != checked.revision:
            raise PolicyLoadError("policy files changed while their tests ran; reload again")
        self._bundle, self._engine = bundle, engine
        log.info("policies loaded: revision %s", bundle.revision)
        return bundle.revision

    async def start(self) -> None:
        return None

    async def params(self) -> dict[str, Any]:
        params = self._bundle.data.get("sendgate", {}).get("params", {})
        return params if isinstance(params, dict) else {}

    async def health(self) -> dict[str, Any]:
        # In-process: serving whenever it exists (a broken reload keeps the old engine).
        return {"ok": True, "engine": "embedded", "revision": self.revision, "detail": None}

    async def close(self) -> None:
        return None

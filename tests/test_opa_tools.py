"""OPA's own tools on `policies/`: check, fmt, test with coverage, Regal; and `sendgate policy test` = `opa test`.

Each needs the real binary (`make tools`): skipped on a laptop without it, a failure under CI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sendgate.policy.bundle import PolicyBundle
from sendgate.policy.embedded import run_rego_tests

from .conftest import POLICIES, ROOT
from .opa_support import require_tool

COVERAGE_THRESHOLD = 90


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_opa_check_strict() -> None:
    result = _run(require_tool("opa"), "check", "--strict", "policies")
    assert result.returncode == 0, result.stdout + result.stderr


def test_opa_fmt_lists_nothing() -> None:
    result = _run(require_tool("opa"), "fmt", "--list", "policies")
    assert result.returncode == 0 and result.stdout.strip() == "", f"run `opa fmt -w policies`: {result.stdout}"


def test_opa_test_with_coverage_threshold() -> None:
    result = _run(require_tool("opa"), "test", "policies", "--coverage", "--threshold", str(COVERAGE_THRESHOLD),
                  "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    coverage = json.loads(result.stdout)["coverage"]
    assert coverage >= COVERAGE_THRESHOLD


def test_regal_lints_clean() -> None:
    # .regal/config.yaml disables only what it gives a reason for.
    result = _run(require_tool("regal"), "lint", "--format", "compact", "policies")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _opa_test_results(directory: Path) -> dict[str, str]:
    result = _run(require_tool("opa"), "test", str(directory), "--format", "json")
    out = {}
    for test in json.loads(result.stdout):
        status = ("SKIPPED" if test.get("skip") else "ERROR" if test.get("error")
                  else "FAIL" if test.get("fail") else "PASS")
        out[f"data.{test['package'].removeprefix('data.')}.{test['name']}"] = status
    return out


def _ours(directory: Path) -> dict[str, str]:
    return {r.test.opa_name: r.status for r in run_rego_tests(PolicyBundle.load(directory))}


def test_sendgate_policy_test_counts_as_opa_test_does() -> None:
    assert _ours(POLICIES) == _opa_test_results(POLICIES)


def test_failures_skips_and_errors_match_opa_test(tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text("package x\n\ny := 1\n\nf(_) := 1\n\nf(_) := 2\n")
    (tmp_path / "x_test.rego").write_text(
        "package x_test\n\nimport data.x\n\n"
        "test_ok if {\n\tx.y == 1\n}\n\n"
        "test_ok if {\n\tx.y == 2\n}\n\n"  # a second body is a second test: test_ok#01, and it fails
        "test_undefined_input if {\n\tinput.a == 1\n}\n\n"
        "test_conflict if {\n\tx.f(1) == 1\n}\n\n"  # a runtime error: ERROR in both
        "todo_test_later if {\n\tfalse\n}\n"
    )
    ours = _ours(tmp_path)
    assert ours == _opa_test_results(tmp_path)
    assert ours == {"data.x_test.test_ok": "PASS", "data.x_test.test_ok#01": "FAIL",
                    "data.x_test.test_undefined_input": "FAIL", "data.x_test.test_conflict": "ERROR",
                    "data.x_test.todo_test_later": "SKIPPED"}


@pytest.mark.parametrize("tool", ["opa", "regal"])
def test_tools_are_the_pinned_versions(tool: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    pinned = next(line.split("?=")[1].strip() for line in makefile.splitlines()
                  if line.startswith(f"{tool.upper()}_VERSION"))
    out = _run(require_tool(tool), "version").stdout
    assert f"Version: {pinned.removeprefix('v')}" in out or f"Version:    {pinned}" in out, out

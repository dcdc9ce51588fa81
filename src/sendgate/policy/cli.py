"""`sendgate policy ...`: the compliance team's loop on the Rego policies, no server needed.

    sendgate policy eval --input doc.json [--explain]          a policy input document (docs/input.md)
    sendgate policy eval --message body.json [state options]   a Cloud API send body; facts from the
                                                               options, or from the configured store
    sendgate policy test [--dir policies] [-v]                 the *_test.rego files, as `opa test` counts them
    sendgate policy bundle -o bundle.tar.gz                    an OPA bundle of policy_dir
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from sendgate.config import Config
from sendgate.policy.base import ENTRYPOINT, Decision, PolicyLoadError

__all__ = ["add_policy_commands", "explain"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A rule head: at the start of a line, a name that is not a keyword (bodies are indented).
_HEAD = re.compile(r"^(?!package\b|import\b|default\b|#)([A-Za-z_]\w*)\b.*$")


def _dump(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _when(value: str, now: float) -> float:
    """`90s`, `15m`, `2h`, `3d` (that long before now), Unix seconds or ISO 8601."""
    match = _DURATION.match(value.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    from sendgate.admin.records import parse_time

    return parse_time(value)


# -- eval ------------------------------------------------------------------------------


def _eval(config: Config, args: argparse.Namespace) -> int:
    from sendgate.policy.embedded import EmbeddedEngine

    if (args.input is None) == (args.message is None):
        raise PolicyLoadError("give either --input (a policy input document) or --message (a send body)")
    engine = EmbeddedEngine(args.dir or config.policy_dir, run_tests=False)
    if args.input is not None:
        document = orjson.loads(_read(args.input))
        facts_from = "input document"
    else:
        document, facts_from = asyncio.run(_document_for_message(config, args))
    decision: Decision = asyncio.run(engine.evaluate(document))
    out: dict[str, Any] = {
        "outcome": decision.outcome,
        "deny": decision.deny,
        "defer": decision.defer,
        "warn": decision.warn,
        "retry_after": decision.retry_after,
        "policy_revision": engine.revision,
    }
    if args.message is not None:
        out["facts_from"] = facts_from
    if args.show_input:
        out["input"] = document
    if args.explain:
        out["explain"] = explain(engine.bundle, document)
    _dump(out)
    return 0 if decision.outcome == "allow" else 3


def _read(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()


_STATE_OPTIONS = ("consent", "categories", "last_inbound", "last_sent", "marketing_sent", "templates")


async def _document_for_message(config: Config, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The input document the gateway would build for this send body, through its own code."""
    from sendgate.facts import build_input
    from sendgate.messages import normalize
    from sendgate.state import open_store

    now = _when(args.now, time.time()) if args.now else time.time()
    message = normalize(orjson.loads(_read(args.message)), args.endpoint)
    phone_number_id = args.phone_number_id or (config.accounts[0].phone_number_id if config.accounts else None)
    if phone_number_id is None:
        raise PolicyLoadError("--phone-number-id is needed: the config lists no accounts")
    if not any(getattr(args, name) not in (None, []) for name in _STATE_OPTIONS):
        store = open_store(config.state)  # no state given: what the gateway would see right now
        try:
            return await build_input(config, store, args.endpoint, args.api_version, phone_number_id, message, now), (
                f"store {config.state}"
            )
        finally:
            await store.close()
    with tempfile.TemporaryDirectory(prefix="sendgate-eval-") as work:
        store = open_store(f"sqlite:///{Path(work) / 'state.db'}")
        try:
            await _seed(store, config, args, phone_number_id, message, now)
            document = await build_input(config, store, args.endpoint, args.api_version, phone_number_id, message, now)
        finally:
            await store.close()
    return document, "options"


async def _seed(store: Any, config: Config, args: argparse.Namespace, phone_number_id: str,
                message: dict[str, Any], now: float) -> None:
    from sendgate.state import ConsentRecord, DecisionRecord, SendRecord

    recipient = message.get("recipient")
    account = config.account(phone_number_id)
    waba_id = account.waba_id if account else None
    if args.templates:
        if waba_id is None:
            raise PolicyLoadError(f"--templates: phone number id {phone_number_id} has no WABA in the config")
        await store.put_templates(waba_id, orjson.loads(Path(args.templates).read_bytes()))
    if recipient is None:
        return
    if args.consent and args.consent != "none":
        await store.record_consent(
            ConsentRecord(recipient, args.consent, tuple(args.categories or ()), "sendgate policy eval", None, now - 1)
        )
    if args.last_inbound:
        await store.record_inbound(phone_number_id, recipient, _when(args.last_inbound, now))
    sends: list[tuple[float, str | None]] = [(_when(w, now), "marketing") for w in args.marketing_sent or []]
    sends += [(_when(w, now), None) for w in args.last_sent or []]
    for i, (at, category) in enumerate(sorted(sends, key=lambda send: send[0])):
        decision_id = f"eval-{i:04d}"
        record = DecisionRecord(decision_id, at, args.endpoint, args.api_version, phone_number_id, waba_id, recipient,
                                message.get("type"), None, category, "allow", "enforce", True)
        await store.log_decision(record, SendRecord(decision_id, phone_number_id, waba_id, recipient, category, at))
    await store.flush()


def explain(bundle: Any, document: dict[str, Any]) -> dict[str, Any]:
    """Which rules fired for this document: each rule head that produced a value, and each package's reasons.

    regorus's coverage marks a rule head covered when the rule produced a value; the
    rules main.rego consults for this kind of call are the ones evaluated.
    """
    from sendgate.policy.embedded import compile_bundle

    engine = compile_bundle(bundle)
    engine.set_enable_coverage(True)
    engine.set_input_json(orjson.dumps(document).decode())
    engine.eval_rule_as_json(ENTRYPOINT)
    report = orjson.loads(engine.get_coverage_report_as_json())
    fired = []
    for file in report.get("files", []):
        lines = file.get("code", "").splitlines()
        for number in sorted(file.get("covered", [])):
            text = lines[number - 1] if 0 < number <= len(lines) else ""
            if _HEAD.match(text):
                fired.append(f"{file['path']}:{number}: {text.strip()}")
    by_package: dict[str, dict[str, list[str]]] = {}
    engine.set_enable_coverage(False)
    for package in sorted(set(bundle.packages.values())):
        if package == "sendgate":
            continue
        for kind in ("deny", "defer", "warn"):
            try:
                value = orjson.loads(engine.eval_rule_as_json(f"data.{package}.{kind}"))
            except Exception:  # the package has no such rule, or it errs on this input
                continue
            if isinstance(value, list) and value:
                by_package.setdefault(package, {})[kind] = [r.get("rule", "?") for r in value if isinstance(r, dict)]
    return {"fired": fired, "reasons_by_package": by_package}


# -- test ------------------------------------------------------------------------------


def _test(config: Config, args: argparse.Namespace) -> int:
    from sendgate.policy.bundle import PolicyBundle
    from sendgate.policy.embedded import run_rego_tests

    bundle = PolicyBundle.load(args.dir or config.policy_dir)
    results = run_rego_tests(bundle)
    counts = {status: sum(r.status == status for r in results) for status in ("PASS", "FAIL", "SKIPPED", "ERROR")}
    for result in results:
        if args.verbose or result.status in ("FAIL", "ERROR"):
            detail = f": {result.error}" if result.error else ""
            print(f"{result.test.file}: {result.test.opa_name}: {result.status}{detail}")
    print("-" * 80)
    for status, n in counts.items():  # the summary lines `opa test` prints, in its order
        if n or status == "PASS":
            print(f"{status}: {n}/{len(results)}")
    return 1 if counts["FAIL"] or counts["ERROR"] or not results else 0


# -- bundle ----------------------------------------------------------------------------


def _bundle(config: Config, args: argparse.Namespace) -> int:
    from sendgate.policy.bundle import PolicyBundle, write_bundle
    from sendgate.policy.embedded import check_policy_dir

    policy_dir = args.dir or config.policy_dir
    if args.no_test:
        bundle = PolicyBundle.load(policy_dir)
    else:
        checked, error = check_policy_dir(policy_dir)  # a bundle that fails its tests is not written
        if error or checked is None:
            raise PolicyLoadError(error or "policy check failed")
        bundle = checked
    target = write_bundle(bundle, args.output, with_tests=args.with_tests)
    print(f"wrote {target}: revision {bundle.revision}, roots {bundle.roots(args.with_tests)}")
    return 0


def add_policy_commands(policy: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    sub = command(policy, "eval", _eval, "evaluate a policy input document, or a send body with given facts")
    sub.add_argument("--input", help="a policy input document (docs/input.md); - reads stdin")
    sub.add_argument("--message", help="a Cloud API send body (what the app POSTs); - reads stdin")
    sub.add_argument("--dir", help="policy directory (default: policy_dir)")
    sub.add_argument("--explain", action="store_true", help="also print which rules fired")
    sub.add_argument("--show-input", action="store_true", help="also print the input document evaluated")
    sub.add_argument("--phone-number-id", help="the sending number (default: the first configured account)")
    sub.add_argument("--endpoint", default="messages", choices=["messages", "marketing_messages", "messages_encrypted"])
    sub.add_argument("--api-version", default="v23.0")
    sub.add_argument("--now", help="the clock: Unix seconds or ISO 8601 (default: now)")
    state = sub.add_argument_group(
        "recipient state (with --message; any of these replaces the configured store with exactly these facts)"
    )
    state.add_argument("--consent", choices=["opted_in", "opted_out", "none"], help="the latest consent record")
    state.add_argument("--categories", nargs="*", help="opted-in categories: marketing utility authentication")
    state.add_argument("--last-inbound", help="when the recipient last wrote: 2h (ago), Unix seconds or ISO 8601")
    state.add_argument("--last-sent", nargs="*",
                       help="earlier sends from this number to the recipient, e.g. 3s, or 1s 1s 2s 2s 2s (a burst)")
    state.add_argument("--marketing-sent", nargs="*", help="earlier marketing templates to the recipient, e.g. 5h 3d")
    state.add_argument("--templates", help="the WABA's template catalog: a Graph message_templates body (JSON)")
    sub = command(policy, "test", _test, "run the Rego tests through the embedded engine, as `opa test` counts them")
    sub.add_argument("--dir", help="policy directory (default: policy_dir)")
    sub.add_argument("--verbose", "-v", action="store_true")
    sub = command(policy, "bundle", _bundle, "write an OPA bundle (.manifest, policies, data) of the policy directory")
    sub.add_argument("--output", "-o", required=True, help="a .tar.gz file, or a new directory")
    sub.add_argument("--dir", help="policy directory (default: policy_dir)")
    sub.add_argument("--with-tests", action="store_true", help="include the *_test.rego files")
    sub.add_argument("--no-test", action="store_true", help="write it even if the Rego tests fail")

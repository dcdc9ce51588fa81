"""`sendgate`: serve the gateway, and work on its store and policies with or without a server running."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from sendgate.admin.logcli import add_log_commands
from sendgate.config import Config, ConfigError, load_config
from sendgate.masking import mask_recipient
from sendgate.policy import EngineError, PolicyLoadError
from sendgate.policy.cli import add_policy_commands
from sendgate.state import (
    ConsentLedger,
    InvalidRecord,
    StateURLError,
    StoreError,
    TemplateCatalog,
    WebhookState,
    run_with_store,
)
from sendgate.state.leader import FleetError

__all__ = ["main"]


def _dump(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _shown(config: Config, recipient: str) -> str:
    """A recipient in a message line, masked with `log.mask_recipients` (the records printed are the ledger's own)."""
    return mask_recipient(recipient) if config.log.mask_recipients else recipient


# -- serve ---------------------------------------------------------------------------


def _serve(config: Config, args: argparse.Namespace) -> int:
    from sendgate.serve import serve

    return serve(config)  # `workers` (or --workers) processes: sendgate/serve.py


# -- consent ---------------------------------------------------------------------------


def _consent_set(config: Config, args: argparse.Namespace) -> int:
    from sendgate.admin.records import consent_from_json

    record = consent_from_json(
        args.recipient,
        {"status": args.status, "categories": args.categories, "source": args.source, "evidence": args.evidence},
    )

    async def work(store: ConsentLedger) -> int:
        await store.record_consent(record)
        _dump(record.as_json())
        return 0

    return run_with_store(config.state, work)


def _consent_show(config: Config, args: argparse.Namespace) -> int:
    from sendgate.messages import normalize_recipient

    recipient = normalize_recipient(args.recipient)

    async def work(store: ConsentLedger) -> int:
        history = await store.consent_history(recipient)
        if not history:
            print(f"no consent records for {_shown(config, recipient)}", file=sys.stderr)
            return 1
        _dump({"recipient": recipient, "current": history[-1].as_json(), "history": [r.as_json() for r in history]})
        return 0

    return run_with_store(config.state, work)


def _consent_import(config: Config, args: argparse.Namespace) -> int:
    from sendgate.admin.records import parse_consent_import

    records = parse_consent_import(Path(args.file).read_text(encoding="utf-8-sig"))

    async def work(store: ConsentLedger) -> int:
        print(f"imported {await store.import_consent(records)} consent records")
        return 0

    return run_with_store(config.state, work)


# -- templates, inbound --------------------------------------------------------------


def _templates_load(config: Config, args: argparse.Namespace) -> int:
    body = orjson.loads(Path(args.file).read_bytes())

    async def work(store: TemplateCatalog) -> int:
        print(f"loaded {await store.put_templates(args.waba, body)} templates for WABA {args.waba}")
        return 0

    return run_with_store(config.state, work)


def _templates_sync(config: Config, args: argparse.Namespace) -> int:
    from sendgate.webhooks.templates import cli_sync

    return cli_sync(config, args.waba)


def _templates_show(config: Config, args: argparse.Namespace) -> int:
    async def work(store: TemplateCatalog) -> int:
        catalog = await store.templates(args.waba)
        if catalog is None:
            print(f"no templates loaded for WABA {args.waba}", file=sys.stderr)
            return 1
        _dump(catalog)
        return 0

    return run_with_store(config.state, work)


def _inbound(config: Config, args: argparse.Namespace) -> int:
    import time

    from sendgate.admin.records import parse_time
    from sendgate.messages import normalize_recipient

    at = parse_time(args.timestamp) if args.timestamp else time.time()
    recipient = normalize_recipient(args.sender)

    async def work(store: WebhookState) -> int:
        await store.record_inbound(args.phone_number_id, recipient, at)
        print(f"window open for {_shown(config, recipient)} on {args.phone_number_id} from {at:.0f}")
        return 0

    return run_with_store(config.state, work)


# -- db --------------------------------------------------------------------------------


def _db_migrate(config: Config, args: argparse.Namespace) -> int:
    from sendgate.state import open_maintenance

    url = args.state or config.state

    async def run() -> int:
        target = open_maintenance(url)
        try:
            version = await target.migrate()
        finally:
            await target.close()
        print(f"{_redacted(url)}: schema version {version}")
        return 0

    return asyncio.run(run())


def _db_copy(config: Config, args: argparse.Namespace) -> int:
    from sendgate.state import open_maintenance
    from sendgate.state.transfer import copy_state

    if args.source == args.target:
        print("sendgate: --from and --to name the same store", file=sys.stderr)
        return 2

    async def run() -> int:
        source, target = open_maintenance(args.source), open_maintenance(args.target)
        try:
            counts = await copy_state(source, target)
        finally:
            await source.close()
            await target.close()
        width = max(len(c.table) for c in counts)
        print(f"{'table':<{width}}  {'from':>10}  {'to':>10}")
        for c in counts:
            print(f"{c.table:<{width}}  {c.source:>10}  {c.target:>10}{'' if c.source == c.target else '  MISMATCH'}")
        differ = [c.table for c in counts if c.source != c.target]
        if differ:
            print(f"sendgate: counts differ for {', '.join(differ)} (was the source written to during the copy?)",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(f"copied {sum(c.target for c in counts)} rows from {_redacted(args.source)} to {_redacted(args.target)}")
        return 0

    return asyncio.run(run())


def _redacted(url: str) -> str:
    """A state URL to print: a password in it never is."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
    return url


# -- policy ----------------------------------------------------------------------------


# `sendgate policy eval|test|bundle`: sendgate/policy/cli.py


# -- parser ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendgate", description=__doc__)
    parser.add_argument("--config", "-c", help="YAML config file (default: documented defaults)")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(parent: Any, name: str, handler: Callable[..., int], help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help)
        sub.add_argument("--config", "-c", dest="sub_config", help=argparse.SUPPRESS)
        sub.set_defaults(handler=handler)
        return sub

    sub = command(commands, "serve", _serve, "serve the gateway")
    sub.add_argument("--workers", type=int, metavar="N",
                     help="worker processes sharing the port (config `workers`; more than 1 needs PostgreSQL and redis_url)")

    consent = commands.add_parser("consent", help="the consent ledger").add_subparsers(dest="action", required=True)
    sub = command(consent, "set", _consent_set, "append a consent record")
    sub.add_argument("recipient")
    sub.add_argument("--status", required=True, choices=["opted_in", "opted_out"])
    sub.add_argument("--categories", nargs="*", default=[], help="marketing utility authentication")
    sub.add_argument("--source")
    sub.add_argument("--evidence")
    command(consent, "show", _consent_show, "current record and history").add_argument("recipient")
    command(consent, "import", _consent_import, "import CSV or JSON lines").add_argument("file")

    templates = commands.add_parser("templates", help="the template catalog").add_subparsers(dest="action", required=True)
    sub = command(templates, "load", _templates_load, "replace a WABA's catalog from a message_templates body")
    sub.add_argument("file")
    sub.add_argument("--waba", required=True)
    command(templates, "show", _templates_show, "print a WABA's catalog").add_argument("--waba", required=True)
    sub = command(templates, "sync", _templates_sync, "fetch catalogs from Meta (template_sync.token) and replace them")
    sub.add_argument("--waba", action="append", help="WABA id, repeatable (default: template_sync.wabas, else every account's)")

    sub = command(commands, "inbound", _inbound, "record an inbound message (opens the 24-hour window)")
    sub.add_argument("--phone-number-id", required=True)
    sub.add_argument("--from", dest="sender", required=True)
    sub.add_argument("--timestamp", help="Unix seconds or ISO 8601 (default: now)")

    log = commands.add_parser("log", help="the decision log").add_subparsers(dest="action", required=True)
    add_log_commands(log, command)  # list, show, stats, export, review, prune: sendgate/admin/logcli.py

    db = commands.add_parser("db", help="the state database itself").add_subparsers(dest="action", required=True)
    sub = command(db, "migrate", _db_migrate, "apply the schema migrations a store lacks (also done at start)")
    sub.add_argument("--state", help="state URL (default: the config's state)")
    sub = command(db, "copy", _db_copy, "copy a whole state into a new, empty store, and compare counts")
    sub.add_argument("--from", dest="source", required=True, help="state URL to copy, e.g. sqlite:///.sendgate/sendgate.db")
    sub.add_argument("--to", dest="target", required=True, help="state URL of an empty store, e.g. postgresql://...")

    policy = commands.add_parser("policy", help="the Rego policies").add_subparsers(dest="action", required=True)
    add_policy_commands(policy, command)  # eval, test, bundle: sendgate/policy/cli.py
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Command-line flags that set a config key win over the file and the environment.
    flags = {key: getattr(args, key) for key in ("workers",) if getattr(args, key, None) is not None}
    try:
        config = load_config(args.sub_config or args.config, overrides=flags)
        handler: Callable[[Config, argparse.Namespace], int] = args.handler
        return handler(config, args)
    except (
        ConfigError,
        StateURLError,
        StoreError,
        InvalidRecord,
        PolicyLoadError,
        EngineError,
        FleetError,
        OSError,
        orjson.JSONDecodeError,
    ) as exc:
        print(f"sendgate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

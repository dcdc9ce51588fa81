"""`sendgate serve --workers N`: the config, the refusals, and real worker processes on one port.

The served tests run the real command on a throwaway PostgreSQL and Redis (tests/services.py).
Which worker answered a request is what `/readyz` says (`pid`); a keep-alive connection stays
with the worker that accepted it, so a client holding one connection per worker reaches each.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sendgate.cli import main
from sendgate.config import ConfigError, load_config
from sendgate.policy.bundle import directory_revision

from sendgate.fakegraph import FakeGraph

from .conftest import (
    ADMIN_TOKEN, APP_TOKEN, CATALOG, PHONE_NUMBER_ID, POLICIES, ROOT, WABA_ID, template_message, text_message)
from .opa_support import free_port

# -- the config and the command line ------------------------------------------------------------


def _env(**values: Any) -> dict[str, str]:
    return {f"SENDGATE_{key.upper()}": orjson.dumps(value).decode() for key, value in values.items()}


PG = "postgresql://sendgate@127.0.0.1:5432/sendgate"
REDIS = "redis://127.0.0.1:6379/0"


def test_workers_default_to_one_and_take_integers_from_1_to_64() -> None:
    assert load_config(None, env={}).workers == 1
    assert load_config(None, env=_env(workers=64, state=PG, redis_url=REDIS)).workers == 64
    for bad in (0, 65, -1, "two", 1.5, True):
        with pytest.raises(ConfigError, match="workers must be an integer"):
            load_config(None, env=_env(workers=bad, state=PG, redis_url=REDIS))


def test_more_than_one_worker_needs_postgresql_and_redis() -> None:
    with pytest.raises(ConfigError, match=r"workers: 2 processes need state they share: set state: postgresql://"):
        load_config(None, env=_env(workers=2))  # the default state: SQLite
    with pytest.raises(ConfigError, match="set redis_url: redis://host:port/db"):
        load_config(None, env=_env(workers=2, state=PG))
    assert load_config(None, env=_env(workers=2, state=PG, redis_url=REDIS)).workers == 2
    assert load_config(None, env=_env(state=PG)).workers == 1  # one process on PostgreSQL needs no Redis


def test_the_workers_flag_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "sendgate.yaml"
    config.write_text(f"workers: 4\nstate: {PG}\nredis_url: {REDIS}\n")
    assert load_config(config, env={}).workers == 4
    assert load_config(config, env={}, overrides={"workers": 1}).workers == 1


def test_serve_with_workers_on_sqlite_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGATE_STATE", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("SENDGATE_LISTEN", f"127.0.0.1:{free_port()}")
    assert main(["serve", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("sendgate: workers: 2 processes need state they share: set state: postgresql://")
    assert "state sqlite:// is one process's" in err
    assert not (tmp_path / "state.db").exists()  # refused before anything was opened
    assert main(["serve", "--workers", "0"]) == 2
    assert "workers must be an integer from 1 to 64, got 0" in capsys.readouterr().err


# -- served by real workers ----------------------------------------------------------------------


class _Served:
    """`sendgate serve --workers N` in a subprocess; its output collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "listening on" in line:
                self._listening.set()
        self._listening.set()

    def wait_listening(self) -> str:
        self._listening.wait(timeout=180)
        listening = [line for line in self.lines if "listening on" in line]
        assert listening, "".join(self.lines)
        return listening[0]

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


@pytest.fixture
def served(
    tmp_path: Path, postgres_url: str, redis_url: str, fake_graph: tuple[FakeGraph, str]
) -> Iterator[tuple[_Served, int, Path]]:
    """Two workers on PostgreSQL and Redis; (the server, its port, its policy directory)."""
    policy_dir = Path(shutil.copytree(POLICIES, tmp_path / "policies"))
    port = free_port()
    config = tmp_path / "sendgate.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nstate: {postgres_url}\nredis_url: {redis_url}\npolicy_dir: {policy_dir}\n"
        f"admin_token: {ADMIN_TOKEN}\npolicy_watch: false\nupstream_url: {fake_graph[1]}\nadmission_timeout: 300\n"
        f"accounts: [{{phone_number_id: '{PHONE_NUMBER_ID}', waba_id: '{WABA_ID}'}}]\n"
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TMPDIR": str(temp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = _Served([sys.executable, "-m", "sendgate.cli", "-c", str(config), "serve", "--workers", "2"], env)
    try:
        yield server, port, temp
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


async def _ready(session: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
        body: dict[str, Any] = await response.json()
        return body


async def _one_session_per_worker(port: int, workers: int) -> dict[int, aiohttp.ClientSession]:
    """A client of one keep-alive connection to each worker, found by opening connections until
    each worker has accepted one (the kernel picks; an idle worker can win every accept on the
    shared socket for a while, so for up to a minute)."""
    sessions: dict[int, aiohttp.ClientSession] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sessions:
            await asyncio.sleep(0.02)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        pid = (await _ready(session, port))["pid"]
        if pid in sessions:
            await session.close()
        else:
            sessions[pid] = session
        if len(sessions) == workers:
            return sessions
    for session in sessions.values():
        await session.close()
    raise AssertionError(f"connections reached only workers {sorted(sessions)}")


async def _send(session: aiohttp.ClientSession, port: int, to: str) -> tuple[int, dict[str, Any], str]:
    async with session.post(
        f"http://127.0.0.1:{port}/v23.0/{PHONE_NUMBER_ID}/messages", data=orjson.dumps(text_message(to=to)),
        headers={"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": "application/json"},
    ) as response:  # fmt: skip
        return response.status, await response.json(), response.headers["X-Sendgate-Decision-Id"]


def _decisions_total(exposition: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "sendgate_decisions"
        for sample in family.samples
        if sample.name == "sendgate_decisions_total"
    )


def _samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(sample.labels, sample.value) for family in text_string_to_metric_families(exposition)
            for sample in family.samples if sample.name == name]  # fmt: skip


async def test_two_workers_share_one_port_and_one_scrape_counts_them_all(served: tuple[_Served, int, Path]) -> None:
    server, port, temp = served
    line = server.wait_listening()
    assert line.startswith(f"sendgate listening on http://127.0.0.1:{port} -> ") and "2 workers" in line
    sessions = await _one_session_per_worker(port, 2)
    try:
        sends = {pid: 7 + i for i, pid in enumerate(sessions)}  # a different count per worker
        n = 0
        for pid, session in sessions.items():
            for _ in range(sends[pid]):
                n += 1
                status, body, _ = await _send(session, port, f"1650555{n:04d}")
                assert (status, body["error"]["code"]) == (400, 131047), body  # no open window: denied, recorded
        for pid, session in sessions.items():
            assert (await _ready(session, port))["pid"] == pid  # each connection stayed with its worker
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                exposition = await response.text()
            assert _decisions_total(exposition) == sum(sends.values())  # every worker's, from either
            # A gauge combines the workers into one series (the largest value), not one per pid.
            assert _samples(exposition, "sendgate_policy_reload_failed") == [({}, 0.0)]
    finally:
        for session in sessions.values():
            await session.close()
    assert server.stop() == 0
    assert server.output().count("listening on") == 1
    assert not list(temp.glob("sendgate-metrics-*"))  # the workers' metric files went with them


# Recipients and their time zones: one of them is always well outside quiet hours (21:00-08:00).
_AWAKE_CANDIDATES = (("16045551234", "America/Vancouver"),  # Canada: US marketing is paused
                      ("5511987654321", "America/Sao_Paulo"),
                     ("919812345678", "Asia/Kolkata"), ("819012345678", "Asia/Tokyo"))  # fmt: skip
DAILY_MARKETING_CAP = min(
    cap["max"] for cap in orjson.loads((POLICIES / "data.json").read_bytes())["sendgate"]["params"]["frequency"]
    ["marketing_caps"] if cap["window_seconds"] <= 86400
)  # fmt: skip


def _awake_recipient() -> str:
    """A recipient whose local time is now between 09:00 and 20:00 (the real clock: real processes)."""
    for recipient, zone in _AWAKE_CANDIDATES:
        if 9 <= datetime.fromtimestamp(time.time(), ZoneInfo(zone)).hour < 20:
            return recipient
    raise AssertionError("no candidate recipient is awake now")


async def test_a_burst_split_over_two_workers_forwards_exactly_the_cap(
    served: tuple[_Served, int, Path], fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    server, port, _ = served
    server.wait_listening()
    recipient = _awake_recipient()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=admin) as session:
        base = f"http://127.0.0.1:{port}/admin/v1"
        for url, body in ((f"{base}/templates/{WABA_ID}", CATALOG),
                          (f"{base}/consent/{recipient}", {"status": "opted_in", "categories": ["marketing"]})):  # fmt: skip
            async with session.put(url, data=orjson.dumps(body)) as response:
                assert response.status == 200, await response.text()
    # Sixteen connections, one kept open to each worker among them; each sends three marketing
    # templates, all at once.
    by_worker = await _one_session_per_worker(port, 2)
    sessions = [*by_worker.values(), *(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(14))]
    try:
        async def three(session: aiohttp.ClientSession) -> list[tuple[int, Any]]:
            results = []
            for _ in range(3):
                async with session.post(
                    f"http://127.0.0.1:{port}/v23.0/{PHONE_NUMBER_ID}/messages",
                    data=orjson.dumps(template_message("spring_sale", to=recipient)),
                    headers={"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": "application/json"},
                ) as response:  # fmt: skip
                    results.append((response.status, await response.json()))
            return results

        results = [r for rs in await asyncio.gather(*(three(session) for session in sessions)) for r in rs]
    finally:
        for session in sessions:
            await session.close()
    assert len(fake.sent) == DAILY_MARKETING_CAP  # the cap holds across both processes
    assert [status for status, _ in results].count(200) == DAILY_MARKETING_CAP
    assert {body["error"]["code"] for status, body in results if status != 200} == {131049}
    assert server.stop() == 0


async def test_sighup_to_the_parent_reloads_every_worker(served: tuple[_Served, int, Path]) -> None:
    server, port, _ = served
    server.wait_listening()
    sessions = await _one_session_per_worker(port, 2)
    try:
        before = {pid: (await _ready(session, port))["checks"]["policy_reload"]["revision"] for pid, session in sessions.items()}
        assert len(set(before.values())) == 1
        policies = _policy_dir(server)
        data = orjson.loads((policies / "data.json").read_bytes())
        data["sendgate"]["params"]["content"]["banned_terms"].append("zebra")
        (policies / "data.json").write_bytes(orjson.dumps(data))
        expected = directory_revision(policies)
        assert expected not in before.values()
        server.process.send_signal(signal.SIGHUP)
        seen: set[int] = set()
        for _ in range(3000):  # new connections, until every worker has answered with the new revision
            async with aiohttp.ClientSession() as fresh:
                ready = await _ready(fresh, port)
            if ready["checks"]["policy_reload"]["revision"] == expected:
                seen.add(ready["pid"])
            if seen == set(sessions):
                break
            await asyncio.sleep(0.02)
        assert seen == set(sessions)
        # And what each worker decides is recorded under the new revision.
        for n, session in enumerate(sessions.values()):
            _, _, decision_id = await _send(session, port, f"1650556{n:04d}")
            assert (await _decision(session, port, decision_id))["policy_revision"] == expected
    finally:
        for session in sessions.values():
            await session.close()
    assert server.stop() == 0


async def _decision(session: aiohttp.ClientSession, port: int, decision_id: str) -> dict[str, Any]:
    for _ in range(200):  # a rejection's record may still be on its way to the database
        async with session.get(f"http://127.0.0.1:{port}/admin/v1/decisions/{decision_id}",
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:  # fmt: skip
            if response.status == 200:
                record: dict[str, Any] = await response.json()
                return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"no record of decision {decision_id}")


def _policy_dir(server: _Served) -> Path:
    config = Path(server.process.args[server.process.args.index("-c") + 1])  # type: ignore[union-attr]
    return Path(load_config(config, env={}).policy_dir)


async def test_a_worker_that_dies_stops_the_rest_and_the_parent_exits_1(served: tuple[_Served, int, Path]) -> None:
    server, port, _ = served
    server.wait_listening()
    sessions = await _one_session_per_worker(port, 2)
    for session in sessions.values():
        await session.close()
    victim, other = list(sessions)
    os.kill(victim, signal.SIGKILL)
    assert server.process.wait(timeout=120) == 1
    assert f"(pid {victim}) was killed by SIGKILL: stopping the others; sendgate exits 1" in server.output()
    assert not _alive(other)


async def test_workers_stop_when_their_parent_is_killed(served: tuple[_Served, int, Path]) -> None:
    server, port, _ = served
    server.wait_listening()
    sessions = await _one_session_per_worker(port, 2)
    for session in sessions.values():
        await session.close()
    server.process.kill()
    server.process.wait()
    for _ in range(1200):
        if not any(_alive(pid) for pid in sessions):
            break
        await asyncio.sleep(0.05)
    assert not any(_alive(pid) for pid in sessions)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited and not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def test_a_second_process_on_postgresql_without_redis_url_does_not_start(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    def config(name: str, redis: str | None) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"listen: 127.0.0.1:{free_port()}\nstate: {postgres_url}\npolicy_dir: {POLICIES}\n"
                        + (f"redis_url: {redis}\n" if redis else ""))  # fmt: skip
        return path

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "sendgate.cli", "-c"]
    first = _Served([*command, str(config("first", None)), "serve"], env)  # a replica without redis_url
    try:
        assert "(enforce mode)" in first.wait_listening()
        for name, redis, says in (
            ("second", None, "another sendgate process serves this PostgreSQL database: processes sharing one "
             "database share their counters and sessions through Redis: set redis_url (redis://host:port/db) on every one"),
            ("third", redis_url, "a sendgate process without redis_url serves this PostgreSQL database (its counters "
             "are its own): set redis_url on it too, or stop it, before starting more processes"),
        ):  # fmt: skip
            refused = subprocess.run([*command, str(config(name, redis)), "serve"], env=env, capture_output=True,
                                     text=True, timeout=120)  # fmt: skip
            assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", f"sendgate: {says}\n")
    finally:
        assert first.stop() == 0


"""Throwaway PostgreSQL and Redis servers for tests: Debian's real programs, never a system service.

Each server runs on a free port on 127.0.0.1 in its own temporary directory (data, sockets and log),
persists nothing beyond it, and removes it on `stop()`. `.ci/run` installs Debian's `postgresql` and
`redis-server` packages; without the programs a test skips, except under CI (`CI=true`), where it
fails, as for OPA (tests/opa_support.py).

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the Debian
package creates (or `$SENDGATE_PG_USER`), with its temporary directory owned by that user.

Fixtures, for conftest.py to import: `postgres_server` and `redis_server` (one per session),
`postgres_url` (a fresh database per test, dropped after it), `redis_url` (FLUSHALL before each test),
`make_postgres` and `make_redis` (servers of a test's own, for fault tests that kill or stop them).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest

from .opa_support import free_port, in_ci

POSTGRES_PROGRAMS = ("initdb", "postgres", "pg_ctl", "pg_isready", "createdb", "dropdb")
DATABASE_USER = "sendgate"  # the superuser initdb creates; trust auth, loopback only
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def _missing(message: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def postgres_bin_dir() -> Path | None:
    """`$SENDGATE_PG_BIN`, then Debian's newest `/usr/lib/postgresql/<major>/bin`, then PATH."""
    explicit = os.environ.get("SENDGATE_PG_BIN")
    if explicit:
        return Path(explicit)
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                    key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if debian:
        return Path(debian[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def require_postgres() -> Path:
    """The directory of PostgreSQL's server programs; skip without them on a laptop, fail under CI."""
    bin_dir = postgres_bin_dir()
    missing = [name for name in POSTGRES_PROGRAMS if bin_dir is None or not os.access(bin_dir / name, os.X_OK)]
    if bin_dir is None or missing:
        _missing(f"PostgreSQL's server programs are not installed ({', '.join(missing)}; "
                 "Debian: apt-get install postgresql, as .ci/run does)")
    assert bin_dir is not None
    return bin_dir


def require_redis() -> str:
    """redis-server's path; skip without it on a laptop, fail under CI."""
    path = os.environ.get("SENDGATE_REDIS_SERVER") or shutil.which("redis-server")
    if path is None or not os.access(path, os.X_OK):
        _missing("redis-server is not installed (Debian: apt-get install redis-server, as .ci/run does)")
    assert path is not None
    return path


def _server_user() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: nobody else (None) unless we are root, which initdb and postgres refuse."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("SENDGATE_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        _missing(f"running as root, PostgreSQL needs an unprivileged user to run as: no user {name!r} "
                 "(the postgresql package creates `postgres`; or set SENDGATE_PG_USER)")
        raise  # unreachable: _missing raises


class _ThrowawayServer:
    """What both servers share: a process, a temporary directory, a log, and their lifecycle.

    A subclass sets `process`, `directory`, `log_path` and `_log`, and defines `start()`, `_end(sig)`
    and `_SHUTDOWN`, the signal of a clean stop.
    """

    _SHUTDOWN: signal.Signals
    directory: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None
    _log: Any

    def start(self) -> None:
        raise NotImplementedError

    def _end(self, sig: signal.Signals) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def shutdown(self) -> None:
        """A clean stop (`_SHUTDOWN`); the directory stays, so `start()` can bring the server back."""
        self._end(self._SHUTDOWN)

    def kill(self) -> None:
        """SIGKILL, as a crash; the directory stays for `start()`."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Shut down if running, then start again: same port, same directory."""
        self.shutdown()
        self.start()

    def stop(self) -> None:
        """The end: shut down, and the whole directory (data, sockets, log) removed."""
        self.shutdown()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


S = TypeVar("S", bound="_ThrowawayServer")


class PostgresServer(_ThrowawayServer):
    """`postgres` on 127.0.0.1:<free port>, its cluster in a temporary directory, trust auth.

    `shutdown()` and `kill()` stop the server and keep its data (`start()` or `restart()` bring the same
    data back: a kill is a crash, recovered from the WAL); `stop()` is the end: shut down, directory removed.
    """

    _SHUTDOWN = signal.SIGINT  # fast shutdown: open transactions roll back, connections end

    def __init__(self, bin_dir: Path | None = None, database: str = "sendgate") -> None:
        self.bin_dir = bin_dir or require_postgres()
        self._user = _server_user()
        self.directory = Path(tempfile.mkdtemp(prefix="sendgate-pg-"))
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "sockets"
        self.log_path = self.directory / "postgres.log"
        self.port = free_port()
        self.database = database
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._database_names = itertools.count(1)
        try:
            self.socket_dir.mkdir()
            if self._user is not None:
                for path in (self.directory, self.socket_dir):
                    os.chown(path, self._user.pw_uid, self._user.pw_gid)
            self._run("initdb", "--pgdata", str(self.data_dir), "--username", DATABASE_USER,
                      "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync")
            self.start()
            self.create_database(database)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{DATABASE_USER}@127.0.0.1:{self.port}/{database}"

    def _as_server_user(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _run(self, program: str, *args: str) -> str:
        """One of PostgreSQL's programs, as the server's user, in its directory; its output, or an error."""
        result = subprocess.run([str(self.bin_dir / program), *args], cwd=self.directory,
                                env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
                                capture_output=True, text=True, check=False, **self._as_server_user())
        if result.returncode != 0:
            raise RuntimeError(f"{program} exited with {result.returncode}: {result.stderr.strip()[-2000:]}")
        output: str = result.stdout
        return output

    def _client_args(self) -> list[str]:
        return ["--host", "127.0.0.1", "--port", str(self.port), "--username", DATABASE_USER]

    def start(self) -> None:
        """Start the server on its port and data directory (again, after `shutdown()` or `kill()`)."""
        if self.running:
            return
        self._log = self.log_path.open("ab")
        # fsync off: a test's cluster never outlives the machine; a SIGKILL still loses nothing
        # committed (the OS keeps the written pages). The unix socket stays inside the directory.
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
                   "-c", f"port={self.port}", "-c", "listen_addresses=127.0.0.1",
                   "-c", f"unix_socket_directories={self.socket_dir}",
                   "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "TimeZone=UTC"]
        # A session of its own, so that kill() reaches the postmaster and every backend at once.
        self.process = subprocess.Popen(command, cwd=self.directory, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True, **self._as_server_user())
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {self.log_tail()}")
            ready = subprocess.run([str(self.bin_dir / "pg_isready"), "--quiet", *self._client_args(),
                                    "--dbname", "postgres"], check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"postgres was not ready in {START_TIMEOUT:g} s: {self.log_tail()}")

    def create_database(self, name: str | None = None, template: str = "template0") -> str:
        """A new database, a copy of `template` (default: empty); its URL."""
        name = name or f"test_{next(self._database_names)}"
        # file_copy: a small database is copied faster than its WAL would be written.
        self._run("createdb", *self._client_args(), "--template", template, "--strategy", "file_copy", name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending its connections first."""
        self._run("dropdb", *self._client_args(), "--force", "--if-exists", name)

    def _end(self, sig: signal.Signals) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    if sig == signal.SIGKILL:
                        os.killpg(self.process.pid, sig)
                    else:
                        self.process.send_signal(sig)
                except ProcessLookupError:
                    pass
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None



class RedisServer(_ThrowawayServer):
    """`redis-server` on 127.0.0.1:<free port>, no persistence (no RDB, no AOF), in a temporary directory.

    `shutdown()`/`kill()` then `start()`/`restart()` come back on the same port, empty: nothing is saved.
    `stop()` is the end: the directory is removed.
    """

    _SHUTDOWN = signal.SIGTERM  # redis-server closes its clients and exits, saving nothing

    def __init__(self, program: str | None = None) -> None:
        self.program = program or require_redis()
        self.directory = Path(tempfile.mkdtemp(prefix="sendgate-redis-"))
        self.log_path = self.directory / "redis.log"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        if self.running:
            return
        self._log = self.log_path.open("ab")
        # No config file: Debian's /etc/redis/redis.conf (port 6379, saving to /var/lib/redis) is never read.
        command = [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no", "--logfile", ""]
        self.process = subprocess.Popen(command, cwd=self.directory, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server was not ready in {START_TIMEOUT:g} s: {self.log_tail()}")

    def command(self, *args: str) -> str:
        """One command over a fresh connection; its simple reply (enough for PING, FLUSHALL, DBSIZE)."""
        request = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(request)
            reply = connection.makefile("rb").readline().decode().rstrip("\r\n")
        if reply.startswith("-"):
            raise RuntimeError(f"redis: {reply[1:]}")
        return reply[1:]

    def flushall(self) -> None:
        self.command("FLUSHALL")

    def _end(self, sig: signal.Signals) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    self.process.send_signal(sig)
                except ProcessLookupError:
                    pass
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None



# Fixtures. conftest.py imports them so that every test module can ask for them by name.

SCHEMA_TEMPLATE = "sendgate_schema"  # a database with sendgate's schema and nothing else


def _migrated_template(server: PostgresServer) -> None:
    """`SCHEMA_TEMPLATE`, migrated as a store's first use would: each test's database is a copy of
    it, a tenth of a second instead of the migrations' half second per test."""
    import asyncio

    import asyncpg

    from sendgate.state.postgresql.schema import migrate

    async def run() -> None:
        conn = await asyncpg.connect(server.create_database(SCHEMA_TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session; tests get their own database (`postgres_url`). Never kill it."""
    server = PostgresServer()
    try:
        _migrated_template(server)
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL, with sendgate's schema and no data, dropped
    after the test (`postgres_server.create_database()` gives one without the schema)."""
    url = postgres_server.create_database(template=SCHEMA_TEMPLATE)
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the session; `redis_url` empties it before each test. Never kill it."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied (FLUSHALL) for this test."""
    redis_server.flushall()
    return redis_server.url


def _own_servers(kind: Callable[[], S]) -> Iterator[Callable[[], S]]:
    """A test's own servers of `kind`, made on demand, each stopped and removed after the test."""
    servers: list[S] = []

    def make() -> S:
        servers.append(kind())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def make_postgres() -> Iterator[Callable[[], PostgresServer]]:
    """Servers of the test's own (to kill, stop or restart), each stopped and removed after the test."""
    yield from _own_servers(PostgresServer)


@pytest.fixture
def make_redis() -> Iterator[Callable[[], RedisServer]]:
    """Redis servers of the test's own, each stopped and removed after the test."""
    yield from _own_servers(RedisServer)

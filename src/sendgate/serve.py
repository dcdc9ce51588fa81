"""`sendgate serve`: the gateway in this process, or in N worker processes on one listening socket.

With `workers: 1` (the default) the gateway serves in this process. With `workers: N` (or
`serve --workers N`; PostgreSQL state and `redis_url` required, see config.py) this process is
the parent: it binds the listening socket (one port), starts N workers (multiprocessing's spawn
method: fresh interpreters, the socket passed to each), and stays with them. Each worker is a
whole gateway serving the same socket (aiohttp `SockSite`); the kernel hands each connection to
one of them.

- The "listening" line is printed once, when every worker accepts connections.
- SIGTERM or SIGINT: SIGTERM to every worker; each drains its requests and stops; the parent
  exits 0 once all have. (A Ctrl-C reaches the workers through the parent only: they ignore SIGINT.)
- SIGHUP: forwarded to every worker, which reloads the policies from the same files as the
  others, so all serve the same revision (a revision is the files' content hash).
- A worker that dies is logged (pid, exit code or signal), the others are stopped, and the parent
  exits 1. No worker is restarted here: the supervisor running sendgate (systemd, Kubernetes,
  compose) restarts the whole set, so a crash loop shows instead of hiding behind restarts.
- When the parent dies (even by SIGKILL), each worker sees its pipe to the parent close and stops.
- `/metrics`: the parent points `PROMETHEUS_MULTIPROC_DIR` at a fresh temporary directory for
  the workers' metric files (prometheus_client's multiprocess mode) and removes it at exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from sendgate.config import Config

__all__ = ["serve"]

log = logging.getLogger("sendgate.serve")


def serve(config: Config) -> int:
    """Serve until SIGTERM or SIGINT; the exit status."""
    from sendgate.app import configure_logging

    configure_logging(config)
    if config.workers == 1:
        asyncio.run(_run_server(config))
        return 0
    return _Parent(config).run()


def _listening_line(config: Config, address: str, workers: int | None = None) -> str:
    how = f"{config.mode} mode" + (f", {workers} workers" if workers else "")
    return f"sendgate listening on http://{address} -> {config.upstream_url} ({how})"


async def _run_server(config: Config, worker: _WorkerSide | None = None) -> None:
    """One gateway: on `config.listen`, or as a worker on the parent's socket."""
    from sendgate.state.fleet import open_membership

    # First of all, the check that this process may share its database (FleetError: what to set).
    membership = open_membership(config.state, shares_counters=config.redis_url is not None)
    await membership.join()
    try:
        await _serve_app(config, worker)
    finally:
        await membership.leave()


async def _serve_app(config: Config, worker: _WorkerSide | None) -> None:
    from aiohttp import web

    from sendgate.app import RELOADER, access_logger_class, create_app

    app = create_app(config)
    runner = web.AppRunner(app, access_log_class=access_logger_class(config), handle_signals=False)
    await runner.setup()
    site: web.BaseSite
    if worker is None:
        site = web.TCPSite(runner, config.host, config.port)
    else:
        site = web.SockSite(runner, worker.listening)
    await site.start()
    _settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # SIGHUP: reload the policies (load, compile, run their tests, swap only if all pass).
    reloads: set[asyncio.Task[Any]] = set()

    def reload_policies() -> None:
        task = loop.create_task(app[RELOADER].reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_policies)
    if worker is None:
        loop.add_signal_handler(signal.SIGINT, stop.set)
        # Printed once the socket accepts connections and the signals are handled: scripts wait
        # for this line, and may stop or reload the server as soon as they see it.
        print(_listening_line(config, config.listen), flush=True)
    else:
        loop.add_reader(worker.parent.fileno(), worker.parent_gone, stop)
        worker.parent.send(("ready",))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # drains in-flight requests, then closes the store


def _settle_heap() -> None:
    """Once everything is loaded: move what start-up made (modules, policies, config, pools) out of
    the collector's reach, and collect the young generation less often. A full collection then walks
    only what serving made, not the whole start-up heap again (tens of ms every few seconds, measured
    with bench/latency.py: the p99.9 of a send)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


_GC_THRESHOLDS = (10_000, 20, 20)


# -- workers -----------------------------------------------------------------------------------


@dataclass
class _WorkerSide:
    """What a worker has of its parent: the listening socket, and a pipe that closes when the parent goes."""

    listening: socket.socket
    parent: Connection

    def parent_gone(self, stop: asyncio.Event) -> None:
        # The parent sends nothing after the start, so the pipe is readable only once it closed.
        asyncio.get_running_loop().remove_reader(self.parent.fileno())
        log.error("the parent sendgate process is gone: this worker stops")
        stop.set()


def _worker_main(config: Config, number: int, listening: socket.socket, parent: Connection) -> None:
    """A worker process (spawned): serve the parent's socket; a start-up failure goes to the parent."""
    from sendgate.app import configure_logging
    from sendgate.policy import EngineError, PolicyLoadError
    from sendgate.state import StateURLError
    from sendgate.state.leader import FleetError

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C arrives from the parent, as SIGTERM
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the loop's reload handler is in place
    configure_logging(config, f"worker {number}")
    try:
        asyncio.run(_run_server(config, _WorkerSide(listening, parent)))
    except (FleetError, StateURLError, PolicyLoadError, EngineError, OSError) as exc:
        parent.send(("failed", 2, str(exc)))
        sys.exit(2)
    except Exception as exc:
        log.exception("worker %d failed", number)
        parent.send(("failed", 1, f"worker {number} failed: {type(exc).__name__}: {exc}"))
        sys.exit(1)


@dataclass
class _Worker:
    number: int
    process: BaseProcess
    pipe: Connection
    ready: bool = False
    reported: tuple[int, str] | None = None  # (exit status, message) a worker sent before it exited


@dataclass
class _Parent:
    """Starts the workers, forwards signals to them, and sees them all out (see the module docstring)."""

    config: Config
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False
    status: int = 0

    def run(self) -> int:
        listening = _bind(self.config)  # OSError (address in use...): `sendgate: ...`, exit 2
        address = "{}:{}".format(*listening.getsockname()[:2])
        metrics_dir = tempfile.mkdtemp(prefix="sendgate-metrics-")
        # Read by prometheus_client when it is imported: the workers are fresh interpreters.
        given_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        handlers = {signum: signal.signal(signum, self._signalled) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            context = multiprocessing.get_context("spawn")
            for number in range(1, self.config.workers + 1):
                if self.stopping:
                    break
                ours, theirs = context.Pipe()
                process = context.Process(target=_worker_main, args=(self.config, number, listening, theirs),
                                          name=f"sendgate-worker-{number}")  # fmt: skip
                process.start()
                theirs.close()
                self.workers.append(_Worker(number, process, ours))
            listening.close()  # the workers have their own copies
            self._watch(address)
        finally:
            for worker in self.workers:
                if worker.process.is_alive():  # only if the watch itself failed
                    worker.process.kill()
                worker.process.join()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            if given_dir is None:
                del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            else:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = given_dir
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return self.status

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            # A worker not yet ready is still loading the policies: it reads the files as they are now.
            self._send(signal.SIGHUP, [w for w in self.workers if w.ready])
            return
        if not self.stopping:
            log.info("stopping %d workers (%s)", len(self.workers), signal.Signals(signum).name)
        self.stopping = True
        self._send(signal.SIGTERM, self.workers)

    @staticmethod
    def _send(signum: int, workers: list[_Worker]) -> None:
        for worker in workers:
            pid = worker.process.pid
            if pid is not None and worker.process.exitcode is None:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

    def _watch(self, address: str) -> None:
        announced = False
        running = {w.process.sentinel: w for w in self.workers}
        pipes = {w.pipe: w for w in self.workers}
        while running:
            for ready in wait([*pipes, *running]):
                if isinstance(ready, Connection):
                    self._read(pipes, pipes[ready])
                elif isinstance(ready, int) and ready in running:
                    self._exited(pipes, running.pop(ready))
            if not announced and not self.stopping and all(w.ready for w in self.workers):
                print(_listening_line(self.config, address, len(self.workers)), flush=True)
                announced = True

    def _read(self, pipes: dict[Connection, _Worker], worker: _Worker) -> None:
        try:
            message = worker.pipe.recv()
        except (EOFError, OSError):  # the worker exited: its sentinel says how
            pipes.pop(worker.pipe, None)
            return
        if message[0] == "ready":
            worker.ready = True
        elif message[0] == "failed":
            worker.reported = (int(message[1]), str(message[2]))

    def _exited(self, pipes: dict[Connection, _Worker], worker: _Worker) -> None:
        while worker.pipe in pipes and worker.pipe.poll():  # what it said before exiting
            self._read(pipes, worker)
        pipes.pop(worker.pipe, None)
        worker.pipe.close()
        # Its sentinel is ready once the process has closed everything, which can be a moment
        # before the kernel lets it be reaped: wait for that, or the exit code reads None.
        worker.process.join(timeout=10)
        code = worker.process.exitcode
        if self.stopping and worker.reported is None:
            return
        if worker.reported is not None:
            status, message = worker.reported
            if self.status == 0:  # the first failure is the one to tell
                print(f"sendgate: {message}", file=sys.stderr, flush=True)
        else:
            status = 1
            how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with {code}"
            log.error("worker %d (pid %s) %s: stopping the others; sendgate exits 1 (workers are not restarted)",
                      worker.number, worker.process.pid, how)  # fmt: skip
        self.status = self.status or status
        self.stopping = True
        self._send(signal.SIGTERM, self.workers)


def _bind(config: Config) -> socket.socket:
    """The listening socket every worker serves: bound here, once, so there is one port."""
    family, _, _, _, address = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listening = socket.create_server(address[:2], family=family)  # the backlog aiohttp's own sites use (128)
    listening.setblocking(False)
    return listening

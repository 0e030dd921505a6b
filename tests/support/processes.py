"""Start real project processes (``rrpd worker``, ``rrpd api``...) for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "tests" / "artifacts" / "logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: each socket stays bound until all are picked (free_port
    called twice may be given the same port back once the first socket closes)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def rrpd_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "rrpd", *args]


@contextmanager
def rrpd_process(
    name: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``rrpd <args>`` with the test environment; its output goes to a log file."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}-{os.getpid()}-{int(time.time() * 1000)}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            rrpd_argv(*args),
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        proc.log_path = log_path  # type: ignore[attr-defined]
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """Stop several process groups at once: every SIGTERM is sent before any wait, so their
    warm shutdowns (a Celery worker's takes ~2.4 s) overlap instead of adding up."""
    for proc in procs:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole process group: the worker dies mid-task, as on a crashed machine."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for_worker(
    proc: subprocess.Popen[bytes], queue: str = "interactive", timeout: float = 60
) -> None:
    """Block until the worker consumes ``queue`` (a ping task round-trips through Redis)."""
    from workers.tasking.app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early; see {proc.log_path}")  # type: ignore[attr-defined]
        result = app.send_task("rrpd.ping", kwargs={"payload": "ready"}, queue=queue)
        try:
            if result.get(timeout=5) == {"reply": "ready"}:
                return
        except Exception:
            time.sleep(0.5)
    raise TimeoutError(f"worker did not answer on {queue}; see {proc.log_path}")  # type: ignore[attr-defined]


@contextmanager
def worker(
    queues: str = "interactive,sync,schedule",
    concurrency: int = 2,
    pool: str = "prefork",
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    with worker_process(queues, concurrency, pool, env) as proc:
        wait_for_worker(proc, queues.split(",")[0])
        yield proc


def worker_process(
    queues: str, concurrency: int, pool: str, env: dict[str, str] | None
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``rrpd worker`` on ``queues``, not yet waited for."""
    return rrpd_process(
        f"worker-{queues.replace(',', '-')}",
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        env=env,
    )


@contextmanager
def workers(
    specs: dict[str, tuple[str, int, str]], env: dict[str, str] | None = None
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Several workers, ``name -> (queues, concurrency, pool)``, started together and waited
    for together (their boots overlap), then stopped together (``stop_all``)."""
    with ExitStack() as stack:
        procs = {
            name: stack.enter_context(worker_process(queues, concurrency, pool, env))
            for name, (queues, concurrency, pool) in specs.items()
        }
        # Registered last, so it runs first: each rrpd_process then finds its process ended.
        stack.callback(stop_all, list(procs.values()))
        for (queues, _, _), proc in zip(specs.values(), procs.values(), strict=True):
            wait_for_worker(proc, queues.split(",")[0])
        yield procs


@contextmanager
def isolated_worker(
    queues: str = "interactive", concurrency: int = 1, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], object]]:
    """A worker on a broker namespace of its own, and a Celery client that sends to it.

    Tests that kill a worker mid-task need to know which worker has the task: the shared
    workers of the test process listen on the same queue names, so this one gets its own
    Redis key prefix.
    """
    import uuid

    from celery import Celery

    prefix = f"{os.environ['RRPD_REDIS_KEY_PREFIX']}-iso-{uuid.uuid4().hex[:6]}"
    # No outbox relay loop: it would publish the shared database's outbox rows (meant for the
    # shared workers) to this worker's own broker namespace.
    worker_env = {
        "RRPD_WORKER_LOOPS": "intake,redelivery",
        **(env or {}),
        "RRPD_REDIS_KEY_PREFIX": prefix,
    }
    client = Celery("rrpd-test-client")
    client.config_from_object("celeryconfig")
    client.conf.broker_transport_options = {
        **client.conf.broker_transport_options,
        "global_keyprefix": f"{prefix}:",
    }
    client.conf.result_backend_transport_options = {
        **client.conf.result_backend_transport_options,
        "global_keyprefix": f"{prefix}:",
    }
    with rrpd_process(
        f"isolated-{queues}",
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        env=worker_env,
    ) as proc:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.send_task("rrpd.ping", kwargs={"payload": "ready"}).get(timeout=5):
                    break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        f"isolated worker did not start; see {proc.log_path}"
                    ) from None  # type: ignore[attr-defined]
        yield proc, client

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from rrpd.cli import cli
from tests.support import processes

COMMANDS = [
    ["db", "upgrade"],
    ["worker"],
    ["beat"],
    ["flower"],
    ["api"],
    ["run"],
    ["keys", "generate"],
    ["keys", "rotate"],
    ["pagerduty-sim"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


# What each server answers on when it is up (Flower's health check needs no login).
SERVERS = {"flower": "/healthcheck", "api": "/healthz", "pagerduty-sim": "/_sim/health"}


@pytest.mark.parametrize("command", SERVERS, ids=str)
def test_server_commands_take_host_and_port(command: str) -> None:
    # 127.0.0.2, not the default 127.0.0.1: the server must bind where it was told.
    host, port = "127.0.0.2", processes.free_port()
    with processes.rrpd_process(command, command, "--host", host, "--port", str(port)) as proc:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"rrpd {command} exited; see {proc.log_path}"  # type: ignore[attr-defined]
            try:
                answer = httpx.get(f"http://{host}:{port}{SERVERS[command]}", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"rrpd {command} never answered on {host}"
                time.sleep(0.2)
        assert answer.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}{SERVERS[command]}", timeout=1)


def test_worker_consumes_every_queue_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.core import logging as rrpd_logging
    from workers.tasking.app import app

    # The argv reaching Celery's worker, not a worker: this test process keeps its logging.
    started: list[list[str]] = []
    monkeypatch.setattr(app, "worker_main", started.append)
    monkeypatch.setattr(rrpd_logging, "configure_logging", lambda: None)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 0, result.output
    [argv] = started
    queues = argv[argv.index("-Q") + 1]
    assert sorted(queues.split(",")) == ["interactive", "schedule", "sync"]


def test_worker_rejects_unknown_queue() -> None:
    result = CliRunner().invoke(cli, ["worker", "--queues", "bulk"])
    assert result.exit_code != 0
    assert "unknown queue(s): bulk" in result.output


def test_keys_generate_prints_a_usable_key() -> None:
    from workers.core.crypto import Keyring

    out = CliRunner().invoke(cli, ["keys", "generate", "--id", "k9"]).output.strip()
    ring = Keyring.parse(out)
    assert ring.primary_id == "k9"
    assert ring.decrypt(ring.encrypt("s")) == "s"


def test_production_without_keys_fails_clearly(tmp_path) -> None:
    env = {
        "RRPD_ENV": "production",
        "RRPD_ENCRYPTION_KEYS": "",
        "RRPD_API_JWT_SECRET": "",
        "RRPD_VAR_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rrpd", "db", "upgrade"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "RRPD_ENCRYPTION_KEYS is not set" in proc.stderr


def test_db_upgrade_on_an_empty_sqlite_database(tmp_path) -> None:
    env = {
        "RRPD_ENV": "local",
        "RRPD_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
        "RRPD_VAR_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rrpd", "db", "upgrade"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "database at revision head" in proc.stdout


@pytest.mark.parametrize(
    "command", [["status", "00000000-0000-0000-0000-000000000000"], ["worker"]]
)
def test_bad_settings_print_one_line_each_and_no_traceback(tmp_path, command) -> None:
    env = {
        "RRPD_ENV": "prod",
        "RRPD_SYNC_INTERVAL_SECONDS": "abc",
        "RRPD_VAR_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rrpd", *command],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(proc.stderr.splitlines()) == [
        (
            "configuration error: RRPD_ENV='prod' is not allowed; expected one of local, test, "
            "production."
        ),
        (
            "configuration error: RRPD_SYNC_INTERVAL_SECONDS='abc' is not allowed; expected a "
            "whole number of seconds, at least 1."
        ),
    ]


@pytest.mark.parametrize("command", [["api"], ["worker"], ["beat"]], ids=" ".join)
def test_a_malformed_encryption_key_stops_every_process_at_start_up(tmp_path, command) -> None:
    env = {
        "RRPD_ENV": "local",
        "RRPD_ENCRYPTION_KEYS": "k1=notafernetkey",
        "RRPD_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
        "RRPD_VAR_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rrpd", *command, *(["--port", "1"] if command == ["api"] else [])],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        (
            "configuration error: RRPD_ENCRYPTION_KEYS: key 'k1' is not a valid Fernet key "
            "(32 url-safe base64-encoded bytes; `rrpd keys generate` makes one)"
        )
    ]


def test_the_production_cli_works_without_the_development_tools() -> None:
    """As in the production image, where rrpd/dev and pagerduty_sim are not installed."""
    import subprocess
    import sys

    hide = (
        "import importlib.abc, sys\n"
        "class Hidden(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pagerduty_sim' or name.startswith('rrpd.dev'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hidden())\n"
        "from rrpd.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    listing = subprocess.run(
        [sys.executable, "-c", hide, "--help"], capture_output=True, text=True, check=False
    )
    assert listing.returncode == 0, listing.stderr
    commands = {
        line.split()[0]
        for line in listing.stdout.split("Commands:")[1].splitlines()
        if line.strip()
    }
    assert {"worker", "beat", "flower", "api", "db", "keys", "status", "sync-now"} <= commands
    assert not commands & {"run", "demo", "pagerduty-sim"}
    missing = subprocess.run(
        [sys.executable, "-c", hide, "run"], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2
    assert "No such command 'run'" in missing.stderr

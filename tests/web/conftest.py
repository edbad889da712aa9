"""A real PatchScreen (uvicorn + the embedded local worker) on a free loopback port, and Chromium.

The server and the worker run as subprocesses with a temporary SQLite database and data directory,
exactly as ``scripts/run`` runs them, so the browser talks to the product and not to a test double.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PATCHSCREEN_CHROMIUM", "/usr/bin/chromium")
ADMIN = ("admin", "admin-password-123")
ANNOTATOR = ("anna", "anna-password-123")
VIEWER = ("vic", "vic-password-123")


@dataclass
class LiveServer:
    url: str
    database_url: str
    data_dir: Path
    env: dict[str, str]
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server did not answer at {url} within {timeout} s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture()
def output_dir(request, tmp_path) -> Path:
    """Screenshots go to test-output/web/<test name>/ (kept after the run), else under tmp_path."""
    out = ROOT / "test-output" / "web" / request.node.name
    try:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        out = tmp_path / "screenshots"
        out.mkdir()
    return out


@pytest.fixture()
def live_server(tmp_path) -> Iterator[LiveServer]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database_url = f"sqlite:///{tmp_path / 'web.sqlite3'}"
    env = {
        **os.environ,
        "PATCHSCREEN_ENV": "test",
        "PATCHSCREEN_DATA_DIR": str(data_dir),
        "PATCHSCREEN_DATABASE_URL": database_url,
        "PATCHSCREEN_DEVICE": "cpu",
        "PATCHSCREEN_JOB_HEARTBEAT_S": "1",
    }
    for var in ("PATCHSCREEN_REDIS_URL", "REDIS_URL", "DATABASE_URL"):
        env.pop(var, None)  # the embedded default: no Redis, the local worker takes the jobs

    # Schema and the admin account, through the same code the CLI uses.
    from app.db import migrate
    from app.db.session import make_engine, session_scope
    from app.services import users

    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with session_scope(engine) as session:
        users.create_user(session, ADMIN[0], ADMIN[1], "admin")
        users.create_user(session, ANNOTATOR[0], ANNOTATOR[1], "annotator")
        users.create_user(session, VIEWER[0], VIEWER[1], "viewer")
    engine.dispose()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "server.log"
    worker_log = tmp_path / "worker.log"
    with open(server_log, "wb") as slog, open(worker_log, "wb") as wlog:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app_from_env",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=slog,
            stderr=subprocess.STDOUT,
        )
        worker = subprocess.Popen(
            [sys.executable, "-c", "from app.cli import main; main()", "worker", "--local"],
            cwd=ROOT,
            env=env,
            stdout=wlog,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_http(f"{url}/health", server, server_log)
            yield LiveServer(url=url, database_url=database_url, data_dir=data_dir, env=env, log=server_log)
        finally:
            _stop(worker)
            _stop(server)


@pytest.fixture()
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.skip("Playwright for Python is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield b
        finally:
            b.close()

"""The server's command line: db upgrade/current/downgrade, create-user (password from stdin), tokens."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import get_settings
from app.db.models import ApiToken, User
from app.db.session import make_engine, session_scope


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHSCREEN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PATCHSCREEN_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_db_commands_create_user_and_tokens(env):
    runner = CliRunner()
    assert "empty" in runner.invoke(cli, ["db", "current"]).output
    r = runner.invoke(cli, ["db", "upgrade"])
    assert r.exit_code == 0 and "revision" in r.output
    assert "upgrade needed" not in runner.invoke(cli, ["db", "current"]).output

    r = runner.invoke(
        cli, ["create-user", "alice", "--role", "admin", "--password-stdin"], input="s3cret-password\n"
    )
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.output
    r = runner.invoke(cli, ["create-user", "alice", "--role", "admin"], input="another-password\n")
    assert r.exit_code == 1 and "exists" in r.output
    r = runner.invoke(cli, ["create-user", "bob", "--role", "wizard"], input="another-password\n")
    assert r.exit_code == 1 and "role" in r.output

    r = runner.invoke(cli, ["token", "create", "alice", "--name", "scanner"])
    assert r.exit_code == 0, r.output
    secret = r.output.strip().splitlines()[-1]
    assert secret.startswith("ps_")
    engine = make_engine(env.resolved_database_url)
    with session_scope(engine) as s:
        user = s.scalar(select(User).where(User.username == "alice"))
        assert user.role == "admin" and user.password_hash.startswith("$argon2")
        token = s.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
        assert token.token_hash != secret and token.revoked_at is None
        token_id = token.id
    assert runner.invoke(cli, ["token", "revoke", str(token_id)]).exit_code == 0
    with session_scope(engine) as s:
        assert s.get(ApiToken, token_id).revoked_at is not None
    assert runner.invoke(cli, ["token", "revoke", "999"]).exit_code == 1

    r = runner.invoke(cli, ["db", "downgrade", "base"])
    assert r.exit_code == 0 and "None" in r.output
    engine.dispose()


def test_serve_starts_the_real_server(env, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from app.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "PATCHSCREEN_DATA_DIR": str(tmp_path)},
    )
    try:
        for _ in range(150):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("the server did not answer")
        assert r.status_code == 200 and r.json()["database"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/images").status_code == 401
    finally:
        proc.terminate()
        proc.wait(20)

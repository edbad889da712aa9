"""Server commands: ``serve``, ``db upgrade|downgrade|current``, ``create-user``, ``token create|revoke``,
and the web-service benchmarks ``bench predict`` and ``bench labels``."""

from __future__ import annotations

import subprocess
import sys

import typer

db_cli = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
token_cli = typer.Typer(help="Long-lived API tokens for REST clients.", no_args_is_help=True)


def register(cli: typer.Typer, bench: typer.Typer) -> None:
    """Attach this module's commands to the root command and to the bench group."""
    cli.command("serve")(serve)
    cli.command("create-user")(create_user)
    cli.add_typer(db_cli, name="db")
    cli.add_typer(token_cli, name="token")
    bench.command("predict")(bench_predict)
    bench.command("labels")(bench_labels)


def _engine():
    from app.core.config import get_settings
    from app.db.session import make_engine

    return make_engine(get_settings().resolved_database_url)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, help="TCP port."),
    with_worker: bool = typer.Option(
        False, "--with-worker", help="Also start the embedded training worker (no Redis needed)."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Run the web service with uvicorn (migrates an empty database at start-up)."""
    import uvicorn

    child = None
    if with_worker:
        child = subprocess.Popen(
            [sys.executable, "-c", "from app.cli import main; main()", "worker", "--local"]
        )
        typer.echo(f"started the local training worker (pid {child.pid})")
    try:
        uvicorn.run(
            "app.main:app_from_env",
            factory=True,
            host=host,
            port=port,
            log_level=log_level,
            proxy_headers=True,
        )
    finally:
        if child is not None:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()


@db_cli.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database up to REVISION (default: the latest)."""
    from app.db import migrate

    engine = _engine()
    migrate.upgrade(engine, revision)
    typer.echo(f"database at revision {migrate.current_revision(engine)}")


@db_cli.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base.")) -> None:
    """Migrate the database down to REVISION (``base`` drops every table: data is lost)."""
    from app.db import migrate

    engine = _engine()
    migrate.downgrade(engine, revision)
    typer.echo(f"database at revision {migrate.current_revision(engine)}")


@db_cli.command("current")
def db_current() -> None:
    """Print the database's revision and the code's latest one."""
    from app.db import migrate

    engine = _engine()
    current, head = migrate.current_revision(engine), migrate.head_revision()
    typer.echo(
        f"current: {current or 'empty'}  head: {head}" + ("" if current == head else "  (upgrade needed)")
    )


def _read_password(stdin: bool) -> str:
    if stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def create_user(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option(..., "--role", help="admin, annotator or viewer."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    """Create an account; the password is prompted for (or read from stdin), never an argument."""
    from app.db.session import session_scope
    from app.services import users
    from app.services.errors import ServiceError

    password = _read_password(password_stdin)
    try:
        with session_scope(_engine()) as session:
            user = users.create_user(session, name, password, role)
            uid = user.id
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {role} {name!r} (id {uid})")


@token_cli.command("create")
def token_create(
    username: str = typer.Argument(..., help="Owner of the token."),
    name: str = typer.Option("cli", help="A label to recognise the token by."),
    days: int | None = typer.Option(None, help="Expire after this many days (default: never)."),
) -> None:
    """Issue an API token; the secret is printed once (only its hash is stored)."""
    from datetime import timedelta

    from app.db.session import session_scope
    from app.services import users
    from app.services.errors import ServiceError

    try:
        with session_scope(_engine()) as session:
            owner = users.get_user_by_name(session, username)
            issued = users.issue_token(
                session, owner, "api", name=name, ttl=timedelta(days=days) if days else None
            )
            token_id = issued.row.id
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"token id {token_id} for {username}:")
    typer.echo(issued.token)


@token_cli.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="Id printed by `token create`.")) -> None:
    """Revoke an API token at once."""
    from app.db.session import session_scope
    from app.services import users
    from app.services.errors import ServiceError

    try:
        with session_scope(_engine()) as session:
            users.revoke_token(session, token_id)
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked token {token_id}")


def bench_predict(
    clients: str = typer.Option("1,4,16", help="Concurrent client counts to measure."),
    requests: int = typer.Option(24, help="Requests per client count (after warm-up)."),
    preset: str = typer.Option("full", help="Model preset to serve: full (the paper's) or small."),
    port: int = typer.Option(0, help="Port for the benchmark server (0: a free one)."),
    rounds: int = typer.Option(1, min=1, help="Repeat all client counts this many times (host drift)."),
    priorities: str = typer.Option(
        "idle,normal",
        help="Request-thread CPU priorities to compare, one server each "
        "(PATCHSCREEN_REQUEST_CPU_PRIORITY: idle, low, normal).",
    ),
) -> None:
    """/predict end to end through HTTP for a 1024x1024 JPEG: p50/p95 per concurrency, model share.

    Each client count's throughput is compared with the model-only rate measured just before and
    after it, and split into how busy the server's model thread was and how long one forward pass
    took there; each round runs one server per request priority, one after the other."""
    from typing import get_args

    from app.cli.web_bench import run_predict_bench
    from app.core.scheduling import Priority

    known = get_args(Priority)
    chosen = tuple(p.strip() for p in priorities.split(",") if p.strip())
    if not chosen or any(p not in known for p in chosen):
        raise typer.BadParameter(f"use a comma list of {', '.join(known)}", param_hint="--priorities")
    run_predict_bench([int(c) for c in clients.split(",")], requests, preset, port, rounds, chosen)


def bench_labels(
    annotators: int = typer.Option(20, help="Concurrent annotators."),
    writes: int = typer.Option(30, help="PUTs per annotator."),
    postgres_url: str | None = typer.Option(
        None, help="PostgreSQL URL (default: PATCHSCREEN_TEST_POSTGRES_URL)."
    ),
    think_ms: str = typer.Option(
        "500,0",
        help="Mean pause between an annotator's clicks, ms (comma list; 0 = back-to-back saturation).",
    ),
) -> None:
    """PUT /images/{id}/labels/{row}/{col} latency at N concurrent annotators, SQLite and PostgreSQL."""
    from app.cli.web_bench import run_labels_bench

    run_labels_bench(annotators, writes, postgres_url, [float(t) for t in think_ms.split(",")])

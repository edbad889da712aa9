"""docker compose cannot run here, so the compose file and the Dockerfile are checked statically:
the services the production path needs, their healthchecks and start order, the GPU reservation,
the volumes, and that every ``patchscreen`` command they name exists with the options given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
import yaml

from app.cli import cli

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _resolve(argv: list[str]):
    """Walk the command tree of ``patchscreen`` along argv; return the leaf command and the rest.

    Typer vendors its own click, so groups are recognised by their ``commands`` mapping."""
    command = typer.main.get_command(cli)
    rest = list(argv)
    while getattr(command, "commands", None) is not None and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, f"`patchscreen {' '.join(argv)}`: no sub-command {name!r}"
        command = sub
    assert getattr(command, "commands", None) is None, f"`patchscreen {' '.join(argv)}` names a group"
    return command, rest


def _option_names(command) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def test_services_present(compose):
    assert {"api", "worker", "worker-cpu", "postgres", "redis", "flower", "migrate"} <= set(
        compose["services"]
    )
    assert compose["services"]["worker-cpu"]["profiles"] == ["cpu"]


def test_healthchecks_and_start_order(compose):
    services = compose["services"]
    for name in ("postgres", "redis", "api"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "worker", "worker-cpu"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
    # Migrations run in exactly one place, once.
    migrating = [n for n, s in services.items() if "upgrade" in " ".join(s.get("command", []))]
    assert migrating == ["migrate"]
    assert services["migrate"]["restart"] == "no"


def test_gpu_worker_reserves_a_gpu_and_consumes_the_gpu_queue(compose):
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert worker["command"][-2:] == ["--queues", "gpu"]
    assert worker["build"]["target"] == "worker"
    assert "deploy" not in compose["services"]["worker-cpu"]


def test_workers_need_only_database_and_redis(compose):
    for name in ("worker", "worker-cpu"):
        service = compose["services"][name]
        assert "volumes" not in service, f"{name} must not depend on the API host's disk"
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:")


def test_volumes_persist_state(compose):
    services = compose["services"]
    declared = set(compose["volumes"])
    for name, mount in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data"), ("api", "/data")):
        vols = {v.split(":")[0]: v.split(":")[1] for v in services[name]["volumes"]}
        assert mount in vols.values(), name
        assert set(vols) <= declared


def test_every_patchscreen_command_exists(compose):
    named = [s["command"] for s in compose["services"].values() if s.get("command", [""])[0] == "patchscreen"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    named += [yaml.safe_load(m) for m in re.findall(r"^CMD (\[.*\])$", dockerfile, flags=re.M)]
    assert len(named) >= 6
    for argv in named:
        assert argv[0] == "patchscreen"
        command, rest = _resolve(argv[1:])
        options = _option_names(command)
        for token in rest:
            if token.startswith("--"):
                assert token.split("=")[0] in options, f"`{' '.join(argv)}`: unknown option {token}"


def test_dockerfile_is_multistage_non_root_with_cpu_and_cuda_targets():
    text = (ROOT / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM (\S+) AS (\S+)$", text, flags=re.M)[i][::-1] for i in range(4))
    assert set(stages) == {"api-build", "api", "worker-build", "worker"}
    assert stages["worker"] == "${CUDA_IMAGE}" and "nvidia/cuda" in text
    assert "download.pytorch.org/whl/cpu" in text
    assert text.count("USER patchscreen") == 2 and "USER root" not in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "var" in ignored and ".git" in ignored


def test_api_settings_are_valid_settings(compose, monkeypatch):
    """The api's PATCHSCREEN_ variables are names and values that Settings accepts (a misspelt one
    would be silently ignored by pydantic-settings); ``${VAR:-default}`` counts as its default and
    ``${VAR:?...}`` (the operator must set it) is left out."""
    from app.core.config import Settings

    env = compose["services"]["api"]["environment"]
    values: dict[str, str] = {}
    for key, raw in env.items():
        text = str(raw)
        if not key.startswith("PATCHSCREEN_") or ":?" in text:
            continue
        values[key] = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)
    assert values["PATCHSCREEN_REQUEST_CPU_PRIORITY"] == "idle"
    for key, value in values.items():
        field = key.removeprefix("PATCHSCREEN_").lower()
        assert field in Settings.model_fields, f"{key} is not a setting"
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATCHSCREEN_SECRET_KEY", "x" * 40)
    settings = Settings()
    assert settings.request_cpu_priority == "idle" and settings.env == "production"

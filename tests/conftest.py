"""Project-wide test fixtures and the CI rule on skipped service tests.

Tests that need a real service carry a marker (postgres, redis, browser). Locally they skip when
the service is missing; under CI=true such a skip fails the run, because CI always has them and a
silent skip would hide a broken set-up.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_IDRID = ROOT.parent / "shared" / "data" / "idrid"
SERVICE_MARKERS = ("postgres", "redis", "browser")

POSTGRES_URL = os.environ.get(
    "PATCHSCREEN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PATCHSCREEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

_skipped_service_tests: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(m in report.keywords for m in SERVICE_MARKERS):
        _skipped_service_tests.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() == "true" and _skipped_service_tests:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI=true but {len(_skipped_service_tests)} test(s) needing PostgreSQL, Redis or the "
                "browser were skipped:",
                red=True,
            )
            for nodeid in _skipped_service_tests[:20]:
                reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def shared_idrid() -> Path:
    """The real IDRiD data laid beside the checkout (never copied into the repo)."""
    if not (SHARED_IDRID / "segmentation").is_dir():
        pytest.skip(f"real IDRiD data not found at {SHARED_IDRID}")
    return SHARED_IDRID


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the real PostgreSQL used by integration tests (skips when it is down)."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis used by integration tests (skips when it is down)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL

import pytest
from pydantic import ValidationError

from app.core.config import Settings


def test_embedded_default_is_sqlite_under_data_dir(tmp_path, monkeypatch):
    for var in ("DATABASE_URL", "PATCHSCREEN_DATABASE_URL", "REDIS_URL", "PATCHSCREEN_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/patchscreen.sqlite3"
    assert s.redis_url is None


def test_worker_needs_only_conventional_urls(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@db/x")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    s = Settings()
    assert s.resolved_database_url == "postgresql+psycopg://u@db/x"
    assert s.redis_url == "redis://cache:6379/0"


def test_production_refuses_default_secret():
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(env="production", cookie_secure=True)
    ok = Settings(env="production", cookie_secure=True, secret_key="x" * 40)
    assert ok.env == "production"

"""The one configuration object of the service, read from the environment.

Every setting has a ``PATCHSCREEN_`` variable; the two a remote worker needs also answer to the
conventional ``DATABASE_URL`` and ``REDIS_URL`` so that a worker host can be configured with nothing
else. Defaults are the embedded ones (SQLite under ``./var``, no Redis, local worker), which are only
acceptable in development: outside it, ``Settings`` refuses to start with the built-in secret key.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.scheduling import Priority

DEV_SECRET_KEY = "dev-insecure-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATCHSCREEN_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("PATCHSCREEN_DATABASE_URL", "DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("PATCHSCREEN_REDIS_URL", "REDIS_URL")
    )
    secret_key: str = DEV_SECRET_KEY
    cookie_secure: bool = False

    # Upload limits: refused with a 4xx before any decoding work is done.
    max_upload_bytes: int = 30 * 1024 * 1024
    max_image_pixels: int = 60_000_000
    min_image_side: int = 256
    max_aspect_ratio: float = 3.0

    # Model and training defaults.
    device: str = "auto"
    # Requests per /predict forward pass. Forward passes never overlap (one queue, one thread); on
    # the 2-core CPU host batching measured slower per image than one image at a time (16 clients:
    # 85% of model-only throughput at 1, 69% at 4; docs/benchmarks.md), so 1 is the default there.
    # Raise it (e.g. 16) where the model runs on a GPU.
    predict_max_batch: int = Field(default=1, ge=1, le=64)
    # CPU scheduling of the web process (app/core/scheduling.py): request handling runs at this
    # priority ("idle" = Linux SCHED_IDLE, "low" = nice 19, "normal") while the forward-pass thread
    # keeps the normal one, and a thread may hold the interpreter lock this long while another
    # waits (CPython's default is 5 ms). "idle" is for a host or container that serves the API
    # alone (docker-compose's api sets it): there the model's cores stay its own. It is not the
    # default because request handling would then stall behind any other busy process on the
    # machine, such as the embedded training worker and the browser on a laptop.
    request_cpu_priority: Priority = "normal"
    switch_interval_ms: float = Field(default=0.5, gt=0, le=100)
    default_preset: Literal["small", "full"] = "small"
    activation_policy: Literal["if_not_worse", "always", "manual"] = "if_not_worse"
    auto_retrain_after_labels: int = 0  # 0 = automatic retraining off
    auto_retrain_quiet_s: float = 30.0  # debounce: wait for this long a pause in labeling
    job_heartbeat_s: float = 2.0  # a running job's worker refreshes its row this often
    job_stale_after_s: float = 60.0  # ... and is presumed dead when it has not for this long
    job_max_attempts: int = 2  # a job whose worker died is re-queued until it has had this many

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.env == "production":
            if self.secret_key == DEV_SECRET_KEY or len(self.secret_key) < 32:
                raise ValueError(
                    "PATCHSCREEN_SECRET_KEY must be set to a random string of 32+ characters in production"
                )
            if not self.cookie_secure:
                raise ValueError("PATCHSCREEN_COOKIE_SECURE must be true in production (HTTPS only cookies)")
        return self

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def resolved_database_url(self) -> str:
        """The database to use: DATABASE_URL if given, else the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'patchscreen.sqlite3').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""The tables of PatchScreen (the schema itself comes from the Alembic migrations in migrations/).

Design rules the rows follow:
- Nothing a clinician produced is ever overwritten: labels are an append-only history, images are
  soft-deleted, model versions are immutable once registered.
- Everything a remote worker needs is in the database: the preprocessed patch tensor of every image
  (``images.patches``) and every checkpoint (``model_versions.checkpoint``). Original files stay on
  the API host and are read only by the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from app.db.base import Base, UTCDateTime, utcnow

ROLES = ("admin", "annotator", "viewer")
TOKEN_KINDS = ("api", "access", "session")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (CheckConstraint("role IN ('admin', 'annotator', 'viewer')", name="role"),)


class ApiToken(Base):
    """Every bearer secret: admin-issued API tokens, OAuth2 access tokens and browser sessions.

    Only the SHA-256 of the (256-bit random) secret is stored, so a database leak gives no usable
    token; a slow hash is unnecessary for secrets with that much entropy.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")

    __table_args__ = (CheckConstraint("kind IN ('api', 'access', 'session')", name="kind"),)


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    original_filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(255))
    # (64, 3, 32, 32) uint8 in the ml.data.patches codec: what training and /predict read.
    patches: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    patch_params: Mapped[str] = mapped_column(String(64))
    # Number of the 64 patches whose consensus label is set; kept in step by every label write.
    labeled_count: Mapped[int] = mapped_column(Integer, default=0)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (Index("ix_images_deleted_at_id", "deleted_at", "id"),)


class PatchLabel(Base):
    """One label event. The current label of an annotator is their latest row for the patch."""

    __tablename__ = "patch_labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    row: Mapped[int] = mapped_column(SmallInteger)
    col: Mapped[int] = mapped_column(SmallInteger)
    label: Mapped[int | None] = mapped_column(SmallInteger)  # 0 healthy, 1 diseased, NULL cleared
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (
        CheckConstraint('"row" >= 0 AND "row" < 8 AND col >= 0 AND col < 8', name="cell"),
        CheckConstraint("label IS NULL OR label IN (0, 1)", name="label"),
        Index("ix_patch_labels_image_id_id", "image_id", "id"),
        Index("ix_patch_labels_image_id_row_col_user_id_id", "image_id", "row", "col", "user_id", "id"),
    )


class TrainingJob(Base):
    """A training run requested by an admin or the retraining policy (driven by app/worker)."""

    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    method: Mapped[str] = mapped_column(String(32))
    preset: Mapped[str] = mapped_column(String(16))
    epochs: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Which labels the job trains on: {"max_label_id": ..., "label_ids": [...], counts...}.
    label_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    trigger: Mapped[str] = mapped_column(String(16), default="manual")
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(32))
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_device: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    # The version this job produced (no FK: model_versions points back at the job with one).
    model_version_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
    )


class ModelVersion(Base):
    """An immutable trained model: the checkpoint bytes and what they were trained on."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    method: Mapped[str] = mapped_column(String(32))
    preset: Mapped[str | None] = mapped_column(String(16))
    checkpoint: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    threshold: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    training_summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # ml.train.config.ModelConfig as a dict (input_norm, model_res, widths), read from the checkpoint.
    network_config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    training_job_id: Mapped[int | None] = mapped_column(ForeignKey("training_jobs.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActiveModel(Base):
    """Exactly one row (id = 1) naming the model that serves predictions.

    Activation is one UPDATE of this row in one transaction, so readers see either the old or the
    new version, never a mixture.
    """

    __tablename__ = "active_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    activated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class Prediction(Base):
    """Audit record of one prediction: who asked, which model answered, what it said."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    upload_sha256: Mapped[str | None] = mapped_column(String(64))
    upload_filename: Mapped[str | None] = mapped_column(String(255))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    diseased: Mapped[bool] = mapped_column(Boolean)
    probabilities: Mapped[list[float]] = mapped_column(JSON)  # 64 values, flat index k = row * 8 + col
    # For a prediction on an upload that was not stored: a metadata-free JPEG (the upload's own
    # data without metadata segments, or a re-encoded square 1024 image; images.overlay_base) so
    # its heatmap overlay can still be drawn (it is not added to the image library).
    overlay_base: Mapped[bytes | None] = deferred(mapped_column(LargeBinary, nullable=True))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Suggestion(Base):
    """A patch suggested to an annotator as worth labeling next (issue 6)."""

    __tablename__ = "suggestions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    row: Mapped[int] = mapped_column(SmallInteger)
    col: Mapped[int] = mapped_column(SmallInteger)
    rank: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float] = mapped_column(Float)
    entropy: Mapped[float] = mapped_column(Float)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    request_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

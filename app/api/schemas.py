"""Pydantic v2 request and response bodies of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LabelName = Literal["healthy", "diseased"]


class Message(BaseModel):
    detail: str


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: str
    is_active: bool
    created_at: datetime


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    role: Literal["admin", "annotator", "viewer"]


class UserUpdate(BaseModel):
    role: Literal["admin", "annotator", "viewer"] | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class LoginIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class LoginOut(BaseModel):
    user: UserOut
    csrf_token: str
    expires_at: datetime | None


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    username: str | None = Field(default=None, description="Owner of the token (default: you).")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    id: int
    name: str
    username: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret: shown only in this response.")


class PredictionSummary(BaseModel):
    id: int
    model_version: int
    score: float
    threshold: float
    diseased: bool
    created_at: datetime


class ImageOut(BaseModel):
    id: int
    sha256: str
    original_filename: str
    format: str
    width: int
    height: int
    size_bytes: int
    labeled_patches: int
    created_at: datetime
    uploaded_by: str | None
    file_url: str
    preview_url: str
    latest_prediction: PredictionSummary | None = None
    created: bool | None = Field(
        default=None, description="On upload: false when the bytes were already stored."
    )


class ImageList(BaseModel):
    items: list[ImageOut]
    total: int
    offset: int
    limit: int


class Annotation(BaseModel):
    user: str
    label: LabelName | None
    at: datetime


class LabelCell(BaseModel):
    row: int
    col: int
    label: LabelName | None = Field(description="Consensus label (what training uses).")
    mine: LabelName | None = Field(description="Your own current label.")
    set_by: str | None = Field(description="Who made the latest change to this patch.")
    set_at: datetime | None
    annotations: list[Annotation] = Field(description="Each annotator's current label.")


class LabelGrid(BaseModel):
    image_id: int
    grid: list[list[LabelName | None]] = Field(description="8x8 consensus labels, grid[row][col].")
    labeled: int
    cells: list[LabelCell]


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: LabelName | None


class LabelChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    row: int = Field(ge=0, le=7)
    col: int = Field(ge=0, le=7)
    label: LabelName | None


class LabelBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[LabelChange] = Field(min_length=1, max_length=64 * 4)


class LabelEvent(BaseModel):
    id: int
    row: int
    col: int
    label: LabelName | None
    user: str
    at: datetime


class ModelOut(BaseModel):
    version: int
    method: str
    preset: str | None
    threshold: float
    metrics: dict[str, Any]
    training_summary: dict[str, Any]
    network: dict[str, Any] | None = Field(
        description="The network's configuration from the checkpoint: input_norm ('image': colours "
        "standardised per image; 'none': max-normalised patches as published), model_res, widths."
    )
    training_job_id: int | None
    checkpoint_sha256: str
    checkpoint_size: int
    created_at: datetime
    active: bool


class PredictByImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: int


class PredictionOut(BaseModel):
    id: int
    model_version: int
    score: float
    threshold: float
    diseased: bool
    patch_probabilities: list[list[float]] = Field(description="8x8, [row][col].")
    heatmap_url: str
    image_id: int | None
    created_at: datetime
    model_seconds: float | None = None
    batch_size: int | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    schema_revision: str | None
    active_model: int | None
    model_error: str | None
    queue: str

"""Prometheus metrics of the process (served at /metrics in the text exposition format)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "patchscreen_http_requests_total",
    "HTTP requests answered.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "patchscreen_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
PREDICTIONS = Counter(
    "patchscreen_predictions_total", "Predictions served.", ["model_version", "decision"], registry=REGISTRY
)
MODEL_SECONDS = Histogram(
    "patchscreen_model_forward_seconds",
    "Wall time of one (batched) forward pass.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "patchscreen_predict_batch_size",
    "Requests per forward pass.",
    buckets=(1, 2, 4, 8, 16, 32),
    registry=REGISTRY,
)
LABEL_WRITES = Counter(
    "patchscreen_label_writes_total", "Patch label changes recorded.", ["label"], registry=REGISTRY
)
UPLOADS = Counter("patchscreen_images_uploaded_total", "Images stored (new bytes).", registry=REGISTRY)


def observe_batch(size: int, seconds: float) -> None:
    BATCH_SIZE.observe(size)
    MODEL_SECONDS.observe(seconds)


def exposition() -> bytes:
    return generate_latest(REGISTRY)

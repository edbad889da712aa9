"""The predict benchmark's reading of the server's forward-pass totals."""

from __future__ import annotations

import pytest

from app.cli.web_bench import forward_totals
from app.services import metrics


def test_forward_totals_follow_the_batches_the_server_observes() -> None:
    before = forward_totals(metrics.exposition().decode())
    metrics.observe_batch(1, 0.25)
    metrics.observe_batch(4, 0.5)
    after = forward_totals(metrics.exposition().decode())
    assert after[0] - before[0] == pytest.approx(0.75)
    assert after[1] - before[1] == 2


def test_forward_totals_ignore_other_series_and_read_zero_when_absent() -> None:
    text = (
        "# HELP patchscreen_model_forward_seconds Wall time of one (batched) forward pass.\n"
        'patchscreen_model_forward_seconds_bucket{le="0.2"} 3.0\n'
        "patchscreen_model_forward_seconds_count 5.0\n"
        "patchscreen_model_forward_seconds_sum 0.9\n"
        "patchscreen_predict_batch_size_sum 7.0\n"
    )
    assert forward_totals(text) == (0.9, 5.0)
    assert forward_totals("") == (0.0, 0.0)

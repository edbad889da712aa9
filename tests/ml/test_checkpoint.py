import io

import numpy as np
import pytest
import torch

from ml.checkpoint import FORMAT_VERSION, CheckpointError, load, save
from ml.data.colour import standardise_colour
from ml.data.patches import PatchParams
from ml.predict import Predictor
from ml.train.config import preset
from ml.train.ssl_gan import train
from ml.train.toy import toy_patches, toy_train_data


@pytest.fixture(scope="module")
def result():
    model_cfg, cfg = preset("tiny")
    return train(toy_train_data(seed=2), cfg, device="cpu", model_cfg=model_cfg)


def test_round_trip_rebuilds_the_same_predictor(result, tmp_path):
    data = save(result, tmp_path / "m.pt")
    assert (tmp_path / "m.pt").read_bytes() == data
    ck = load(data)
    assert ck.method == "ssl-gan"
    assert ck.model_cfg == result.model_cfg and ck.train_cfg == result.train_cfg
    assert ck.params == PatchParams()
    assert ck.threshold == pytest.approx(result.threshold)
    assert ck.data_summary["image_ids"] == [f"toy-{i}" for i in range(8)]
    assert ck.metrics["threshold_source"] == "validation"
    x, _ = toy_patches(2, seed=7)
    direct = result.classifier()
    assert ck.model_cfg.input_norm == "image"  # the predictor standardises colours as training did
    fed = standardise_colour(x)
    with torch.no_grad():
        expected = direct(torch.from_numpy(fed.reshape(-1, 3, 32, 32)).float() / 127.5 - 1)[0]
    got = Predictor.from_checkpoint(tmp_path / "m.pt").patch_logits(x)
    np.testing.assert_allclose(got.ravel(), (expected[:, 1] - expected[:, 0]).numpy(), rtol=1e-5, atol=1e-5)


def _rewrite(data: bytes, **changes) -> bytes:
    payload = torch.load(io.BytesIO(data), weights_only=True)
    payload.update(changes)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def test_refuses_other_format_versions(result):
    data = save(result)
    with pytest.raises(CheckpointError, match=f"version {FORMAT_VERSION + 1} is not supported"):
        load(_rewrite(data, format_version=FORMAT_VERSION + 1))


def test_refuses_foreign_bytes(result):
    with pytest.raises(CheckpointError, match="not a PatchScreen checkpoint"):
        load(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="format marker"):
        load(_rewrite(save(result), format="something-else"))


def test_checkpoint_from_before_input_norm_feeds_patches_unchanged(result):
    payload = torch.load(io.BytesIO(save(result)), weights_only=True)
    cfg = dict(payload["model_cfg"])
    del cfg["input_norm"]
    old = load(_rewrite(save(result), model_cfg=cfg))
    assert old.model_cfg.input_norm == "none"
    x, _ = toy_patches(2, seed=7)
    with torch.no_grad():
        raw = old.classifier()(torch.from_numpy(x.reshape(-1, 3, 32, 32)).float() / 127.5 - 1)[0]
    got = Predictor(old).patch_logits(x)
    np.testing.assert_allclose(got.ravel(), (raw[:, 1] - raw[:, 0]).numpy(), rtol=1e-5, atol=1e-5)

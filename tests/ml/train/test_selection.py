from dataclasses import replace

import torch

from ml.models import build_classifier
from ml.train.config import preset
from ml.train.loop import Selection, evaluate, finish, for_model, selection_key
from ml.train.toy import toy_train_data

CPU = torch.device("cpu")


def _setup(**overrides):
    model_cfg, cfg = preset("tiny", epochs=4, eval_every=2, **overrides)
    data = for_model(toy_train_data(n_train=4, n_val=4, seed=5, labeled_images=2), model_cfg)
    torch.manual_seed(0)
    a, b = build_classifier("convnet", model_cfg).eval(), build_classifier("convnet", model_cfg).eval()
    return model_cfg, cfg, data, a, b


def _key(model, data):
    return selection_key(evaluate(model, data.val_patches, data.val_patch_labels, data.val_image_labels, CPU))


def test_evaluates_on_schedule_and_keeps_a_copy_of_the_best():
    _, cfg, data, a, b = _setup()
    sel = Selection(data, cfg, CPU)
    seen = [sel.observe(1, a), sel.observe(2, a), sel.observe(3, b), sel.observe(4, b)]
    assert [v is None for v in seen] == [True, False, True, False]  # every eval_every epochs and the last
    best_is_a = _key(a, data) >= _key(b, data)
    assert sel.epoch == (2 if best_is_a else 4)
    assert sel.key == max(_key(a, data), _key(b, data))
    kept, source = sel.model, (a if best_is_a else b)
    assert kept is not source
    before = {k: v.clone() for k, v in kept.state_dict().items()}
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # training goes on with the live EMA module: the snapshot must not follow
    assert all(torch.equal(before[k], v) for k, v in kept.state_dict().items())


def test_without_selection_nothing_is_kept_and_the_last_epoch_stands():
    _, cfg, data, a, _ = _setup(select_on_val=False)
    sel = Selection(data, cfg, CPU)
    assert sel.observe(4, a) is not None
    assert sel.model is None and sel.epoch == cfg.epochs and sel.val is None


def test_no_validation_images_means_no_evaluation():
    _, cfg, data, a, _ = _setup()
    sel = Selection(replace(data, val_patches=None, val_patch_labels=None, val_image_labels=None), cfg, CPU)
    assert sel.observe(4, a) is None and sel.model is None


def test_finish_reports_the_selected_models_validation_and_a_cpu_copy():
    model_cfg, cfg, data, a, _ = _setup()
    res = finish(
        "convnet",
        a,
        best_epoch=2,
        epochs_run=4,
        history=[],
        best_val=None,
        data=data,
        cfg=cfg,
        model_cfg=model_cfg,
        device=CPU,
        t0=0.0,
    )
    val = evaluate(a, data.val_patches, data.val_patch_labels, data.val_image_labels, CPU)
    assert res.val_metrics == {"patch_auc": val["patch_auc"], "image_auc": val["image_auc"]}
    assert res.threshold_source == "validation" and (res.best_epoch, res.epochs_run) == (2, 4)
    assert all(v.device == CPU for v in res.state_dict.values())
    assert res.state_dict.keys() == a.state_dict().keys()

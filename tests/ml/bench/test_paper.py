import json
import warnings

import numpy as np
import pytest

from ml.bench import paper
from ml.bench.cohort_npz import load_npz, save_npz
from ml.data.cache import CohortArrays
from ml.data.patches import PatchParams
from ml.train import supervised as paper_models
from ml.train.supervised import train as supervised_train
from ml.train.toy import toy_patches


def _toy_npz(path, n=20):
    x, y = toy_patches(n, seed=11)
    masks = np.zeros((n, 32, 32), bool)
    for i in range(n):
        for k in np.flatnonzero(y[i]):
            r, c = divmod(k, 8)
            masks[i, r * 4 : r * 4 + 2, c * 4 : c * 4 + 2] = True
    arrays = CohortArrays(
        ids=[f"img{i:02d}" for i in range(n)],
        patches=x,
        patch_labels=y,
        image_labels=(y == 1).any(1).astype(np.int8),
        masks=masks,
        fractions=np.zeros(y.shape, np.float32),
    )
    return save_npz(arrays, path)


def test_npz_round_trip(tmp_path):
    path = _toy_npz(tmp_path / "c.npz")
    back = load_npz(path)
    x, y = toy_patches(20, seed=11)
    assert back.ids[0] == "img00" and np.array_equal(back.patches, x) and np.array_equal(back.patch_labels, y)
    assert back.masks.shape == (20, 32, 32) and back.masks.sum() > 0


@pytest.mark.slow
def test_protocol_writes_results_and_resumes(tmp_path, capsys):
    data = _toy_npz(tmp_path / "c.npz")
    out = tmp_path / "run"
    argv = [
        "--data",
        str(data),
        "--labeled",
        "2,all",
        "--samplings",
        "1",
        "--methods",
        "ssl-gan,convnet,resnet34",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--resnet-epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    paper.main(argv)
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 6
    keys = {"method", "labeled", "sampling", "patch_auc", "image_auc", "epochs", "device", "wall_s", "data"}
    for r in results:
        assert keys <= set(r)
        assert 0.0 <= r["image_auc"] <= 1.0 and 0.0 <= r["patch_auc"] <= 1.0
    assert {r["labeled"] for r in results} == {2, 12}  # "all" = the 12 training images of 20
    table = (out / "table.md").read_text()
    assert "[paper 84.5]" not in table and "ssl-gan" in table and "± " in table
    assert (out / "roc_image.png").stat().st_size > 1000
    # Resume: nothing is recomputed; a new count only runs its own cells.
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    paper.main(argv)
    assert "0 to run" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == before
    paper.main([*argv[:3], "2,3,all", *argv[4:6], "--methods", "convnet", *argv[8:]])
    assert len(json.loads((out / "results.json").read_text())) == 7
    assert {r["input_norm"] for r in json.loads((out / "results.json").read_text())} == {"image"}
    # One folder, one model input: resuming with the published input is refused, nothing is run.
    with pytest.raises(SystemExit, match="--input-norm image"):
        paper.main([*argv, "--input-norm", "none"])
    with pytest.raises(SystemExit, match="--pool mean"):  # nor with another pooling
        paper.main([*argv, "--pool", "max"])
    with pytest.raises(SystemExit, match="--dropout 0.2,0.5"):  # nor with other dropout rates
        paper.main([*argv, "--dropout", "0,0"])
    with pytest.raises(SystemExit, match="--train-labels lesion"):  # nor with other training labels
        paper.main([*argv, "--train-labels", "image"])
    with pytest.raises(SystemExit, match="--precision fp32"):  # nor in another training precision
        paper.main([*argv, "--precision", "bf16"])
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 7 and {r["pool"] for r in results} == {"mean"}
    assert {r["train_labels"] for r in results} == {"lesion"} and {r["precision"] for r in results} == {
        "fp32"
    }
    assert all(r["dropout"] == [0.2, 0.5] for r in results)


@pytest.mark.parametrize("bad", ["0.5", "0.2,1.0", "a,b", "0.1,0.2,0.3", "-0.1,0.5"])
def test_dropout_flag_takes_two_rates(bad):
    with pytest.raises(SystemExit, match="--dropout takes INPUT,HIDDEN"):
        paper.folder_options(paper.parse([f"--dropout={bad}", "--out", "o"]))


def test_network_flags_reach_the_networks(tmp_path):
    """--pool and --dropout are what the cells' networks are built with, and what results.json says."""
    data = _toy_npz(tmp_path / "c.npz")
    out = tmp_path / "run"
    argv = ["--data", str(data), "--labeled", "2", "--samplings", "1", "--methods", "convnet"]
    argv += ["--preset", "tiny", "--epochs", "1", "--device", "cpu", "--pool", "max", "--dropout", "0,0.25"]
    built = []
    real = paper_models.build_classifier

    def spy(method, cfg):
        built.append(cfg)
        return real(method, cfg)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paper_models, "build_classifier", spy)
        paper.main([*argv, "--out", str(out)])
    assert [(c.pool, c.input_dropout, c.dropout) for c in built] == [("max", 0.0, 0.25)]
    (row,) = json.loads((out / "results.json").read_text())
    assert row["pool"] == "max" and row["dropout"] == [0.0, 0.25]


def test_image_training_labels_put_the_grade_on_every_patch_of_labeled_images(tmp_path):
    arrays = load_npz(_toy_npz(tmp_path / "c.npz"))
    train_ids, val_ids = arrays.ids[:12], arrays.ids[12:16]
    labeled = [train_ids[i] for i in (0, 3, 5, 6)]
    lesion = paper.train_data(arrays, train_ids, labeled, val_ids)
    image = paper.train_data(arrays, train_ids, labeled, val_ids, "image")
    grades = arrays.image_labels[:12]
    assert len(set(grades[[0, 3, 5, 6]])) == 2  # the toy set labels both kinds of image here
    for i in range(12):
        if train_ids[i] in labeled:
            assert (image.patch_labels[i] == grades[i]).all()
            assert np.array_equal(lesion.patch_labels[i], arrays.patch_labels[i])
        else:
            assert (image.patch_labels[i] == -1).all() and (lesion.patch_labels[i] == -1).all()
    assert (image.patch_labels[[0, 3, 5, 6]] != lesion.patch_labels[[0, 3, 5, 6]]).any()
    assert np.array_equal(image.val_patch_labels, lesion.val_patch_labels)  # evaluation is unchanged


def _run_with_spy(tmp_path, module, flags, on_train, methods="convnet"):
    """One toy cell per method with ``module.train`` seeing (and possibly replacing) each run's
    config first; returns the run folder."""
    data = _toy_npz(tmp_path / "c.npz")
    out = tmp_path / "run"
    argv = ["--data", str(data), "--labeled", "4", "--samplings", "1", "--methods", methods]
    argv += ["--preset", "tiny", "--epochs", "1", "--device", "cpu", *flags, "--out", str(out)]
    real = module.train

    def spy(data, cfg, *a, **k):
        return real(data, on_train(data, cfg), *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "train", spy)
        paper.main(argv)
    return out


def test_train_labels_flag_reaches_the_training_data(tmp_path):
    seen = []
    out = _run_with_spy(
        tmp_path,
        paper_models,
        ["--train-labels", "image"],
        lambda d, c: seen.append(d.patch_labels.copy()) or c,
    )
    (labels,) = seen
    taught = labels[(labels >= 0).all(1)]
    assert len(taught) == 4 and all(len(set(row)) == 1 for row in taught)  # one grade per image
    (row,) = json.loads((out / "results.json").read_text())
    assert row["train_labels"] == "image"
    assert json.loads((out / "meta.json").read_text())["train_labels"] == "image"
    assert "training patch labels image" in (out / "table.md").read_text()


def test_table_shows_published_numbers_at_paper_counts():
    rows = [
        {"method": "ssl-gan", "labeled": 10, "sampling": s, "image_auc": v} for s, v in enumerate([0.8, 0.9])
    ]
    t = paper.table(rows, "image_auc", published=True)
    assert "85.0 ± 5.0 (n=2) [paper 84.5]" in t


def test_protocol_builds_its_networks_for_the_cohorts_patch_resolution(tmp_path):
    x, y = toy_patches(20, seed=11, res=64)
    arrays = CohortArrays(
        ids=[f"img{i:02d}" for i in range(20)],
        patches=x,
        patch_labels=y,
        image_labels=(y == 1).any(1).astype(np.int8),
        masks=np.zeros((20, 32, 32), bool),
        fractions=np.zeros(y.shape, np.float32),
        params=PatchParams(model_res=64),
    )
    data = save_npz(arrays, tmp_path / "c64.npz")
    assert load_npz(data).params.model_res == 64
    argv = ["--data", str(data), "--labeled", "4", "--samplings", "1", "--methods", "ssl-gan,convnet"]
    paper.main([*argv, "--preset", "tiny", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "o")])
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["model_res"] for r in results] == [64, 64]


def test_learning_curves_of_a_folder_without_validation_curves(tmp_path):
    """A folder of ResNet34 runs has no validation AUC history: the plot is still written, quietly."""
    (tmp_path / "runs").mkdir()
    history = [{"epoch": 1, "val_patch_auc": None, "val_image_auc": None}]
    (tmp_path / "runs" / "resnet34_10_0.history.json").write_text(json.dumps(history))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paper.plot_curves(tmp_path, [{"method": "resnet34", "labeled": 10, "sampling": 0}])
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000


def test_precision_flag_reaches_the_training_config(tmp_path):
    seen = []
    out = _run_with_spy(
        tmp_path, paper_models, ["--precision", "bf16"], lambda d, c: seen.append(c.precision) or c
    )
    assert seen == ["bf16"]
    (row,) = json.loads((out / "results.json").read_text())
    assert row["precision"] == "bf16"
    assert json.loads((out / "meta.json").read_text())["precision"] == "bf16"
    assert "training precision bf16" in (out / "table.md").read_text()


def test_step_flag_reaches_the_ssl_gan_only(tmp_path):
    from dataclasses import replace

    from ml.train import ssl_gan

    seen = []

    def note(data, cfg):  # a CPU cannot replay CUDA graphs: note the request, train eagerly
        seen.append(cfg.step)
        return replace(cfg, step="eager")

    out = _run_with_spy(tmp_path, ssl_gan, ["--step", "graph"], note, methods="ssl-gan,convnet")
    assert seen == ["graph"]
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["ssl-gan"]["step"] == "graph" and rows["convnet"]["step"] == "eager"
    assert json.loads((out / "meta.json").read_text())["overrides"]["step"] == "graph"


def test_unlabeled_weight_flag_reaches_the_ssl_gan_and_binds_the_folder(tmp_path):
    from ml.train import ssl_gan

    seen = []
    out = _run_with_spy(
        tmp_path,
        ssl_gan,
        ["--unlabeled-weight", "0"],
        lambda d, c: seen.append(c.unlabeled_weight) or c,
        methods="ssl-gan,convnet",
    )
    assert seen == [0.0]
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["ssl-gan"]["unlabeled_weight"] == 0.0 and rows["convnet"]["unlabeled_weight"] is None
    assert json.loads((out / "meta.json").read_text())["unlabeled_weight"] == 0.0
    assert "SSL-GAN unlabeled weight 0.0" in (out / "table.md").read_text()
    # The folder holds ablation runs: resuming it at the published weight is refused.
    meta = json.loads((out / "meta.json").read_text())
    argv = meta["command"].split()[3:]  # after "python -m ml.bench.paper"
    argv[argv.index("--unlabeled-weight") + 1] = "1"
    with pytest.raises(SystemExit, match="--unlabeled-weight 0.0"):
        paper.main(argv)


def test_g_base_flag_builds_the_ssl_gan_generator_at_that_width(tmp_path):
    from ml.train import ssl_gan

    data = _toy_npz(tmp_path / "c.npz")
    out = tmp_path / "run"
    argv = ["--data", str(data), "--labeled", "4", "--samplings", "1", "--methods", "ssl-gan"]
    argv += ["--preset", "tiny", "--epochs", "1", "--device", "cpu", "--out", str(out)]
    seen = []
    real = ssl_gan.train

    def spy(*a, **k):
        seen.append(k["model_cfg"].g_base)
        return real(*a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ssl_gan, "train", spy)
        paper.main([*argv, "--g-base", "16"])
    assert seen == [16]
    (row,) = json.loads((out / "results.json").read_text())
    assert row["g_base"] == 16
    assert "generator root width 16" in (out / "table.md").read_text()
    with pytest.raises(SystemExit, match="--g-base 16"):  # resumed at the preset's width: refused
        paper.main(argv)
    # A folder written before the flag existed ran at its preset's width (tiny: 32).
    meta = json.loads((out / "meta.json").read_text())
    del meta["g_base"]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="--g-base 32"):
        paper.main([*argv, "--g-base", "16"])


def test_a_non_positive_generator_learning_rate_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit) as exit_:
        paper.parse(["--data", "synthetic", "--g-lr-scale", "0", "--out", "o"])
    assert exit_.value.code == 2 and "--g-lr-scale must be positive" in capsys.readouterr().err


def test_labeled_sampling_reaches_both_trainers_that_draw_labeled_batches(tmp_path):
    from ml.train import ssl_gan

    seen = []

    def record(d, c):
        seen.append(c.labeled_sampling)
        return c

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paper_models, "train", lambda d, c, *a, **k: supervised_train(d, record(d, c), *a, **k))
        out = _run_with_spy(
            tmp_path, ssl_gan, ["--labeled-sampling", "balanced"], record, methods="ssl-gan,convnet,resnet34"
        )
    assert seen == ["balanced"] * 3
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["ssl-gan"]["labeled_sampling"] == rows["convnet"]["labeled_sampling"] == "balanced"
    assert rows["resnet34"]["labeled_sampling"] is None  # its own class-weighted epochs
    assert "labeled patches drawn balanced" in (out / "table.md").read_text()
    meta = json.loads((out / "meta.json").read_text())
    argv = meta["command"].split()[3:]
    del meta["labeled_sampling"]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="--labeled-sampling tiled"):
        paper.main(argv)


@pytest.mark.parametrize(
    ("flag", "field", "text", "value", "default", "in_table"),
    [
        ("--fm-features", "fm_features", "spatial", "spatial", "pooled", "feature matching on spatial"),
        ("--wn-scales", "wn_scales", "published", "published", "trainable", "weight-norm scales published"),
        ("--adam-eps", "adam_eps", "1e-4", 1e-4, "1e-08", "Adam epsilon 0.0001"),
        ("--g-lr-scale", "g_lr_scale", "0.33", 0.33, "1.0", "generator learning rate x0.33"),
    ],
)
def test_an_ssl_gan_flag_reaches_the_trainer_and_binds_the_folder(
    tmp_path, flag, field, text, value, default, in_table
):
    from ml.train import ssl_gan

    seen = []
    out = _run_with_spy(
        tmp_path,
        ssl_gan,
        [flag, text],
        lambda d, c: seen.append(getattr(c, field)) or c,
        methods="ssl-gan,convnet",
    )
    assert seen == [value]
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["ssl-gan"][field] == value and rows["convnet"][field] is None
    assert in_table in (out / "table.md").read_text()
    # A folder written before the flag existed ran with its default: resuming it with the value is refused.
    meta = json.loads((out / "meta.json").read_text())
    argv = meta["command"].split()[3:]
    del meta[field]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match=f"{flag} {default}"):
        paper.main(argv)


def test_train_seed_redraws_every_runs_streams_and_binds_the_folder(tmp_path):
    """Same labeled samplings, another training seed for both learners; recorded; not mixed in a folder."""
    from ml.train import ssl_gan

    seen = []

    def record(d, c):
        seen.append(c.seed)
        return c

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paper_models, "train", lambda d, c, *a, **k: supervised_train(d, record(d, c), *a, **k))
        out = _run_with_spy(tmp_path, ssl_gan, ["--train-seed", "2"], record, methods="ssl-gan,convnet")
    assert seen == [4 + 2 * paper.TRAIN_SEED_STRIDE] * 2  # sampling 0, 4 labeled, offset 2
    rows = json.loads((out / "results.json").read_text())
    assert [r["train_seed"] for r in rows] == [2, 2]
    assert "training seed offset 2" in (out / "table.md").read_text()
    meta = json.loads((out / "meta.json").read_text())
    argv = meta["command"].split()[3:]
    del meta["train_seed"]  # a folder from before the flag: trained at offset 0
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="--train-seed 0"):
        paper.main(argv)
    meta["train_seed"] = 2
    del meta["streams"]  # a folder from before the versioned streams: its seeds are other draws
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="random streams version 1; this code draws version 2"):
        paper.main(argv)
    assert [r["streams"] for r in rows] == [2, 2]

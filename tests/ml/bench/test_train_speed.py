from ml.bench import train_speed


def test_flops_are_counted_from_the_model():
    tiny = train_speed.count_gflop("tiny")
    small = train_speed.count_gflop("small")
    # Doubling every width roughly quadruples the convolution FLOPs: small (16/32) vs tiny (8/16).
    assert 3.0 < small / tiny < 4.5


def test_speed_result_shape_on_cpu():
    r = train_speed.run("tiny", device="cpu", iters=2, warmup=1, bf16=False, compile_mode=None)
    assert {"device", "naive_ms", "optimized_ms", "ratio", "tflops"} <= set(r)
    assert r["naive_ms"] > 0 and r["optimized_ms"] > 0
    assert abs(r["ratio"] - r["naive_ms"] / r["optimized_ms"]) <= 0.01 + 0.01 * r["ratio"]
    # The whole-iteration CUDA graph is a GPU-only variant: said so, and not the reported one here.
    assert r["optimized_variant"] == "compiled" and r["optimized_ms"] == r["variants_ms"]["compiled"]
    assert "need a GPU" in r["variants_ms"]["whole_graph"]
    assert "need a GPU" in r["variants_ms"]["whole_graph_compiled"]


def test_no_variant_starts_past_the_budget_once_one_has_a_figure(monkeypatch):
    calls = []

    def fake(variant, *args):
        calls.append(variant)
        return 7.0

    monkeypatch.setattr(train_speed, "time_variant", fake)
    r = train_speed.run("tiny", device="cpu", iters=1, warmup=0, bf16=False, compile_mode=None, budget_s=0)
    assert calls == ["whole_graph"]  # the first runs whatever the budget: a figure is needed
    assert r["optimized_variant"] == "whole_graph" and r["optimized_ms"] == 7.0
    assert "skipped" in r["variants_ms"]["whole_graph_compiled"] and "skipped" in r["variants_ms"]["compiled"]


def test_failed_variants_are_reported_and_the_eager_step_still_gives_a_figure(monkeypatch):
    def broken(variant, *args):
        raise RuntimeError(f"{variant} broke")

    monkeypatch.setattr(train_speed, "time_variant", broken)
    r = train_speed.run("tiny", device="cpu", iters=1, warmup=0, bf16=False, compile_mode=None)
    assert all(r["variants_ms"][v].startswith("failed (RuntimeError") for v in train_speed.VARIANTS)
    assert r["optimized_variant"] == "eager" and r["optimized_ms"] == r["variants_ms"]["eager"] > 0
    assert r["compile_mode"].startswith("none")

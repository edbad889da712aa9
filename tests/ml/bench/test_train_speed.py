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

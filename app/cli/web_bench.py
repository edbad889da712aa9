"""Benchmarks of the web service through real HTTP (``patchscreen bench predict`` / ``bench labels``).

Each run starts the real server (uvicorn, one process, as `patchscreen serve` runs it) on a
temporary database, drives it with asyncio HTTP clients from this process, prints the figures,
and removes everything it created. Nothing here is a test: the numbers go to docs/benchmarks.md.
The client process freezes its heap before measuring (it imported the app and torch: a full
garbage collection there paused every request in flight for 60-90 ms, which no browser adds),
and simulated annotators start at random moments rather than all at once.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from app.core.scheduling import freeze_startup_heap, keep_freed_memory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@contextmanager
def _server(database_url: str, data_dir: Path, port: int = 0, extra_env: dict[str, str] | None = None):
    """Run uvicorn on the app factory in a child process; yields its base URL."""
    import httpx

    port = port or _free_port()
    env = {
        **os.environ,
        "PATCHSCREEN_DATA_DIR": str(data_dir),
        "PATCHSCREEN_DATABASE_URL": database_url,
        "PATCHSCREEN_ENV": "development",
        **(extra_env or {}),
    }
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=1).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("the benchmark server exited during start-up")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def untrained_checkpoint(preset_name: str = "full") -> bytes:
    """A checkpoint of the preset's real network with initial weights: same cost as a trained one."""
    import torch

    from ml.checkpoint import save
    from ml.data.patches import PatchParams
    from ml.models import build_classifier
    from ml.train.config import preset

    torch.manual_seed(0)
    model_cfg, train_cfg = preset(preset_name)
    model = build_classifier("ssl-gan", model_cfg)
    result = SimpleNamespace(
        method="ssl-gan",
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        params=PatchParams(),
        threshold=32.0,
        data_summary={"note": "untrained weights, for timing only"},
        state_dict=model.state_dict(),
    )
    return save(result)


def _seed_database(url: str, *, checkpoint: bytes | None = None, annotators: int = 0, images: int = 0):
    """Schema, an admin token, optional annotators with tokens, images, an active model."""
    from app.core.config import Settings
    from app.db import migrate
    from app.db.session import make_engine, session_scope
    from app.services import images as image_service
    from app.services import models, users
    from app.services.storage import Storage
    from ml.synth import generate

    engine = make_engine(url)
    migrate.upgrade(engine)
    out = SimpleNamespace(admin=None, annotators=[], image_ids=[])
    with session_scope(engine) as s:
        admin = users.create_user(s, "bench-admin", uuid.uuid4().hex, "admin")
        out.admin = users.issue_token(s, admin, "api", name="bench").token
        for i in range(annotators):
            u = users.create_user(s, f"bench-annotator-{i}", uuid.uuid4().hex, "annotator")
            out.annotators.append(users.issue_token(s, u, "api", name="bench").token)
        if checkpoint is not None:
            mv = models.register_model_version(s, checkpoint, method="ssl-gan", preset="full")
            models.activate(s, mv.version, admin)
    if images:
        settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="ps-bench-store-")))
        with session_scope(engine) as s:
            admin = users.get_user_by_name(s, "bench-admin")
            for i in range(images):
                rgb, _ = generate(100 + i, size=320)
                buf = io.BytesIO()
                from PIL import Image

                Image.fromarray(np.asarray(rgb)).save(buf, format="JPEG", quality=90)
                prepared = image_service.prepare(buf.getvalue(), f"bench-{i}.jpg", settings)
                out.image_ids.append(
                    image_service.store_prepared(s, Storage(settings.storage_dir), [prepared], admin)[
                        0
                    ].image.id
                )
    engine.dispose()
    return out


def _jpeg_1024(seed: int = 7) -> bytes:
    from PIL import Image

    from ml.synth import generate

    rgb, _ = generate(seed, size=1024)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _served_predictor(checkpoint: bytes, optimized: bool = True):
    """The predictor exactly as the server loads it (app.services.models), or the plain eager one."""
    from app.services.models import optimize_for_cpu
    from ml.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint)
    if optimized:
        optimize_for_cpu(predictor)
    return predictor


def _model_only(predictor, batch_sizes=(1, 4, 16), repeats: int = 5) -> dict[int, float]:
    """Seconds per forward pass (median) of the predictor alone, per batch size."""
    rng = np.random.default_rng(0)
    out = {}
    for b in batch_sizes:
        x = rng.integers(0, 256, size=(b, 64, 3, 32, 32), dtype=np.uint8)
        predictor.predict(x)  # warm-up
        times = []
        for _ in range(repeats if b == 1 else max(2, repeats // 2)):
            t = time.perf_counter()
            predictor.predict(x)
            times.append(time.perf_counter() - t)
        out[b] = statistics.median(times)
    return out


def _best_rate(predictor) -> float:
    """Model-only images per second at the best of batch sizes 1 and 4: the reference throughput."""
    return max(b / t for b, t in _model_only(predictor, (1, 4)).items())


def forward_totals(exposition: str) -> tuple[float, float]:
    """(seconds, count) of the server's forward passes so far, from its Prometheus text.

    Read before and after a level, they give what the level's throughput is made of: how much of
    the wall time the model thread was busy, and how long one forward pass took inside the server
    (against the same pass measured alone)."""
    totals = {"sum": 0.0, "count": 0.0}
    for line in exposition.splitlines():
        name, _, value = line.partition(" ")
        for key in totals:
            if name == f"patchscreen_model_forward_seconds_{key}":
                totals[key] = float(value)
    return totals["sum"], totals["count"]


async def _predict_level(base: str, token: str, jpeg: bytes, clients: int, total: int):
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    model_s: list[float] = []
    batches: list[int] = []
    remaining = {"n": total}

    async with httpx.AsyncClient(
        base_url=base, timeout=300, limits=httpx.Limits(max_connections=clients)
    ) as c:

        async def one(record: bool) -> None:
            t = time.perf_counter()
            r = await c.post(
                "/api/v1/predict", files={"file": ("bench.jpg", jpeg, "image/jpeg")}, headers=headers
            )
            dt = time.perf_counter() - t
            r.raise_for_status()
            if record:
                body = r.json()
                latencies.append(dt)
                model_s.append(body["model_seconds"])
                batches.append(body["batch_size"])

        async def client() -> None:
            while remaining["n"] > 0:
                remaining["n"] -= 1
                await one(True)

        async def forward_so_far() -> tuple[float, float]:
            r = await c.get("/metrics", headers=headers)
            r.raise_for_status()
            return forward_totals(r.text)

        await asyncio.gather(*(one(False) for _ in range(clients)))  # warm-up at this concurrency
        before = await forward_so_far()
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
        after = await forward_so_far()
    busy_s, passes = after[0] - before[0], after[1] - before[1]
    server = SimpleNamespace(busy=busy_s / wall, forward_s=busy_s / max(passes, 1.0))
    return latencies, model_s, batches, wall, server


def run_predict_bench(
    levels: list[int],
    requests: int,
    preset_name: str,
    port: int,
    rounds: int = 1,
    priorities: tuple[str, ...] = ("normal",),
) -> None:
    """Print the /predict tables. Each level's throughput is compared with the model-only rate
    measured just before and just after it, in this process while the server is idle: the host's
    speed drifts by 10-30% within minutes (shared hardware), more than the effects measured here.
    With several request-thread priorities (``PATCHSCREEN_REQUEST_CPU_PRIORITY``), every round runs
    one server per priority, one after the other, so that they are compared under the same drift.
    The server's own forward-pass totals (``/metrics``) around each level split the ratio in two:
    how much of the time the model thread was busy, and how much slower one forward pass ran in
    the server, beside the request work, than alone.
    """
    import torch

    print(
        f"host: {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    keep_freed_memory()  # the model-only reference runs with the server's allocator settings
    checkpoint = untrained_checkpoint(preset_name)
    served = _served_predictor(checkpoint)
    eager, model = _model_only(_served_predictor(checkpoint, optimized=False)), _model_only(served)
    for name, m in (("eager ml.predict.Predictor", eager), ("as served (frozen, channels_last)", model)):
        print(
            f"model only, {preset_name}, {name}: 1 image (64 patches) {m[1] * 1000:.0f} ms = "
            f"{1 / m[1]:.2f} img/s; batch of 4: {4 / m[4]:.2f} img/s; batch of 16: {16 / m[16]:.2f} img/s"
        )
    jpeg = _jpeg_1024()
    print(f"input: 1024x1024 JPEG, {len(jpeg) / 1024:.0f} KiB, multipart upload, not stored")
    rows: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ps-bench-predict-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        seeded = _seed_database(url, checkpoint=checkpoint)
        print(
            "| round | request priority | clients | requests | p50 s | p95 s | throughput img/s | mean batch "
            "| model share of p50 | p50 minus its forward pass, ms | model-only img/s around it "
            "| throughput / model-only | model thread busy | forward pass in the server, ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        freeze_startup_heap()  # this client's full collections would count as server latency
        reference = _best_rate(served)
        for r in range(1, rounds + 1):
            for priority in priorities:
                env = {"PATCHSCREEN_REQUEST_CPU_PRIORITY": priority}
                with _server(url, Path(tmp), port, env) as base:
                    for c in levels:
                        n = max(requests, 3 * c)
                        lat, ms, batches, wall, server = asyncio.run(
                            _predict_level(base, seeded.admin, jpeg, c, n)
                        )
                        after = _best_rate(served)
                        ref, reference = (reference + after) / 2, after
                        p50, model_s, tput = _pct(lat, 50), statistics.median(ms), n / wall
                        rows.setdefault((priority, c), []).append(
                            (p50, model_s, tput, ref, server.busy, server.forward_s)
                        )
                        print(
                            f"| {r} | {priority} | {c} | {n} | {p50:.3f} | {_pct(lat, 95):.3f} | "
                            f"{tput:.2f} | {statistics.mean(batches):.1f} | {model_s / p50:.0%} | "
                            f"{(p50 - model_s) * 1000:.0f} | {ref:.2f} | {tput / ref:.0%} | "
                            f"{server.busy:.0%} | {server.forward_s * 1000:.0f} |"
                        )
    top = max(levels)
    for priority in priorities:
        if (priority, 1) in rows:
            single = rows[(priority, 1)]
            p50 = statistics.median(x[0] for x in single)
            other = statistics.median(x[0] - x[1] for x in single)
            print(
                f"{priority}: single client (median of {rounds} rounds): p50 {p50:.3f} s (target < 0.35 s); "
                f"non-model time {other * 1000:.0f} ms = {other / p50:.0%} of p50 (target < 15%)"
            )
        top_rows = rows[(priority, top)]
        ratios = [x[2] / x[3] for x in top_rows]
        print(
            f"{priority}: {top} clients: throughput / model-only per round "
            f"{', '.join(f'{q:.0%}' for q in ratios)}; median {statistics.median(ratios):.0%} "
            "(target >= 90%); "
            f"model thread busy {', '.join(f'{x[4]:.0%}' for x in top_rows)}, one forward pass in the "
            f"server {', '.join(f'{x[5] * 1000:.0f}' for x in top_rows)} ms against "
            f"{', '.join(f'{1000 / x[3]:.0f}' for x in top_rows)} ms per image alone"
        )


async def _labels_clients(
    base: str, tokens: list[str], image_ids: list[int], writes: int, think_s: float, seed: int = 0
):
    import httpx

    rng = random.Random(seed)
    latencies: list[float] = []
    errors = {"n": 0}
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=len(tokens))
    ) as c:

        async def annotator(i: int, token: str, n: int, record: bool) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            image_id = image_ids[i % len(image_ids)]
            if think_s:  # people do not all click at the same instant: start at a random point
                await asyncio.sleep(rng.uniform(0.0, 2.0 * think_s))
            for _ in range(n):
                row, col = rng.randrange(8), rng.randrange(8)
                label = rng.choice(["healthy", "diseased", None])
                t = time.perf_counter()
                r = await c.put(
                    f"/api/v1/images/{image_id}/labels/{row}/{col}", json={"label": label}, headers=headers
                )
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    errors["n"] += 1
                elif record:
                    latencies.append(dt)
                if think_s:  # a person looks at the next patch before clicking again
                    await asyncio.sleep(rng.uniform(0.0, 2.0 * think_s))

        await asyncio.gather(*(annotator(i, t, 2, False) for i, t in enumerate(tokens)))
        start = time.perf_counter()
        await asyncio.gather(*(annotator(i, t, writes, True) for i, t in enumerate(tokens)))
        wall = time.perf_counter() - start
    return latencies, errors["n"], wall


def run_labels_bench(annotators: int, writes: int, postgres_url: str | None, think_ms: list[float]) -> None:
    from sqlalchemy import text

    from app.db.session import make_engine

    postgres_url = postgres_url or os.environ.get(
        "PATCHSCREEN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    print(
        f"{annotators} concurrent annotators x {writes} PUT /images/{{id}}/labels/{{row}}/{{col}} each, "
        f"{max(1, annotators // 5)} images shared by 5 annotators each; uvicorn, 1 process"
    )
    print("| database | think time (mean) | PUTs | p50 ms | p95 ms | p99 ms | max ms | PUT/s | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    n_images = max(1, annotators // 5)
    with tempfile.TemporaryDirectory(prefix="ps-bench-labels-") as tmp:
        schema = f"ps_bench_{uuid.uuid4().hex[:8]}"
        pg_base = make_engine(postgres_url)
        with pg_base.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in postgres_url else "?"
        backends = [
            ("SQLite", f"sqlite:///{Path(tmp) / 'labels.sqlite3'}"),
            ("PostgreSQL", f"{postgres_url}{sep}options=-csearch_path%3D{schema}"),
        ]
        try:
            for name, url in backends:
                seeded = _seed_database(url, annotators=annotators, images=n_images)
                freeze_startup_heap()  # this client's full collections would count as server latency
                with _server(url, Path(tmp) / name) as base:
                    for think in think_ms:
                        lat, errors, wall = asyncio.run(
                            _labels_clients(base, seeded.annotators, seeded.image_ids, writes, think / 1000)
                        )
                        ms = [x * 1000 for x in lat]
                        print(
                            f"| {name} | {think:.0f} ms | {len(ms)} | {_pct(ms, 50):.1f} | "
                            f"{_pct(ms, 95):.1f} | "
                            f"{_pct(ms, 99):.1f} | {max(ms):.1f} | {len(ms) / wall:.0f} | {errors} |"
                        )
        finally:
            with pg_base.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            pg_base.dispose()

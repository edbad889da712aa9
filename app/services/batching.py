"""Micro-batching of concurrent predictions into one forward pass at a time.

The API host has few cores and PyTorch already spreads one forward pass over all of them; two
forward passes at once would only fight over the same cores and both finish late. So one thread
runs every forward pass. While it is busy, new requests queue; when it is free it takes all of them
(up to ``max_batch``) and runs them as one batch, grouped by predictor so that a request keeps the
model it started with even across an activation. A lone request waits for nothing.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class BatchResult:
    prediction: Any  # ml.predict.Prediction
    model_seconds: float  # wall time of the forward pass this request was part of
    batch_size: int


@dataclass
class _Item:
    predictor: Any
    patches: np.ndarray
    future: Future


class Batcher:
    def __init__(self, max_batch: int = 16, on_batch=None) -> None:
        self.max_batch = max_batch
        self.on_batch = on_batch  # callback(batch_size, seconds), e.g. for metrics
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, predictor: Any, patches: np.ndarray) -> Future:
        fut: Future = Future()
        self._ensure_thread()
        self._queue.put(_Item(predictor, patches, fut))
        return fut

    def start(self) -> None:
        """Start the forward-pass thread now. It keeps the CPU priority of the thread that starts it
        (and so do PyTorch's intra-op threads, which it starts), so the web process starts it before
        lowering its request threads' priority (``app.core.scheduling``)."""
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="predict-batcher", daemon=True)
                self._thread.start()

    def close(self) -> None:
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            stop = False
            while len(items) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            groups: dict[int, list[_Item]] = {}
            for it in items:
                groups.setdefault(id(it.predictor), []).append(it)
            for group in groups.values():
                self._forward(group)
            if stop:
                return

    def _forward(self, group: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            stacked = np.stack([it.patches for it in group])
            predictions = group[0].predictor.predict(stacked)
        except Exception as exc:  # every waiting request learns why
            for it in group:
                it.future.set_exception(exc)
            return
        seconds = time.perf_counter() - start
        if self.on_batch is not None:
            self.on_batch(len(group), seconds)
        for it, pred in zip(group, predictions, strict=True):
            it.future.set_result(BatchResult(pred, seconds, len(group)))

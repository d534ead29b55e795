"""Encoders: the same EfficientNet-Lite0 (ImageNet) network through Keras and through ONNX
Runtime, and bmbench's embedding extraction against a bare ONNX Runtime loop.

All three embed the same decoded images (the real Matek 2021 subset at 224 px, decoded once
through bmbench's image stage before timing):

* **bare ONNX Runtime**: ``InferenceSession.run`` over float32 batches, nothing else;
* **bmbench ONNX**: :func:`bmbench.models.embeddings.embed` with the ``onnx`` encoder and an
  empty embedding cache (scaling as declared, the cache keys and writes included); then the
  same call again, every embedding cached;
* **bmbench Keras**: the same call with the ``keras_file`` encoder (the ``.keras`` file of
  the same weights, average-pooled in Keras).

Rounds alternate the contenders (A B C A B C ...) and the best round of each counts, so a
machine shared with other work skews them alike. Target: bmbench's ONNX extraction at least
0.9x the bare loop's images/s. Options: ``--n`` images (256), ``--batch`` (32),
``--rounds`` (3). Needs ``../shared/models`` and ``../shared/datasets``; CPU only here (no
GPU was measured).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .common import machine, write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ONNX = SHARED / "models" / "efficientnet_lite0_imagenet.onnx"
KERAS = SHARED / "models" / "efficientnet_lite0_imagenet.keras"


def _images(n: int, cache: Path):
    from bmbench.data.images import ImageSource, load_images

    root = SHARED / "datasets" / "matek_bm"
    paths = sorted(str(p) for p in root.rglob("*.jpg"))[:: max(1, 1400 // n)][:n]
    return load_images(paths, ImageSource(224), cache, 2, "decoding")


def run(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m benchmarks encoders")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv or [])
    if not ONNX.is_file() or not KERAS.is_file():
        return f"encoders: skipped ({ONNX.parent} lacks the Lite0 files)"
    import onnxruntime as ort

    from bmbench.config.schema import Context
    from bmbench.models.embeddings import embed, spec_of
    from bmbench.models.encoders import parse_encoder

    ctx_key = Context("benchmark", "model.backbone")
    onnx_enc = parse_encoder({"kind": "onnx", "path": str(ONNX), "output": "features"}, ctx_key).open()
    keras_enc = parse_encoder({"kind": "keras_file", "path": str(KERAS)}, ctx_key).open()
    keras_net = keras_enc.build("imagenet", 224, 0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = _images(a.n, tmp / "images")
        rows = np.flatnonzero(images.valid)
        session = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def bare():
            for s in range(0, len(rows), a.batch):
                session.run(None, {name: np.asarray(images.images[rows[s:s + a.batch]], np.float32)})

        def through(encoder, build, round_):
            notes = SimpleNamespace(count_embeddings=lambda **k: None)
            ctx = SimpleNamespace(cache_dir=tmp / f"cache-{encoder.key_name}-{round_}", notes=notes)
            spec = spec_of(encoder, "imagenet", "avg", 0, "float32")
            t0 = time.perf_counter()
            first = embed(images, spec, ctx, build, a.batch)
            t1 = time.perf_counter()
            embed(images, spec, ctx, build, a.batch)
            return t1 - t0, time.perf_counter() - t1, first

        times = {"bare": [], "onnx": [], "onnx_cached": [], "keras": []}
        outputs = {}
        bare()  # warm-up: first-run allocations
        through(keras_enc, lambda: keras_net, "warm")
        for r in range(a.rounds):
            t0 = time.perf_counter()
            bare()
            times["bare"].append(time.perf_counter() - t0)
            first, cached, outputs["onnx"] = through(onnx_enc, lambda: onnx_enc, r)
            times["onnx"].append(first)
            times["onnx_cached"].append(cached)
            first, _, outputs["keras"] = through(keras_enc, lambda: keras_net, r)
            times["keras"].append(first)
    n = len(rows)
    rate = {k: n / min(v) for k, v in times.items()}
    diff = float(np.abs(outputs["onnx"] - outputs["keras"]).max())
    lines = [
        f"Machine: {machine()}; onnxruntime {ort.__version__}; CPU only (no GPU measured). "
        f"{n} Matek 2021 images at 224 px, batch {a.batch}, best of {a.rounds} alternating rounds.",
        "",
        "| path | images/s | ratio |",
        "|---|---|---|",
        f"| bare ONNX Runtime loop | {rate['bare']:.1f} | 1.00 (reference) |",
        f"| bmbench `embed`, onnx encoder, empty cache | {rate['onnx']:.1f} | "
        f"{rate['onnx'] / rate['bare']:.2f} of bare (target >= 0.9) |",
        f"| bmbench `embed`, keras_file encoder (same weights), empty cache | {rate['keras']:.1f} | "
        f"{rate['keras'] / rate['onnx']:.2f} of bmbench ONNX |",
        f"| bmbench `embed`, onnx encoder, every embedding cached | {rate['onnx_cached']:.1f} | "
        f"{rate['onnx_cached'] / rate['onnx']:.0f}x the uncached extraction |",
        "",
        f"Largest difference between the ONNX and Keras embeddings: {diff:.2e}.",
    ]
    body = "\n".join(lines)
    write_section("Encoders: Keras vs ONNX Runtime, bmbench vs a bare loop", body)
    return body

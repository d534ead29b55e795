"""Input pipeline of the deep families: decode each image once, then feed ``tf.data``.

**Decoded-image cache.** :func:`load_images` decodes and resizes a list of image files once
into one ``uint8[n, s, s, 3]`` ``.npy`` file under ``<cache>/images/``, read back as a
memory map (so data sets larger than memory work, and the OS page cache keeps hot ones in
RAM). The key is the sha256 of every file's bytes, the image size, ``keep_aspect`` and
:data:`IMAGE_CACHE_VERSION`, so renamed or copied data sets hit and edited images miss.
A ``valid`` mask (False where a file could not be decoded under
``dataset.on_bad_image: skip``) is stored beside it. Both files are written to temporary
names and renamed into place; on read, a missing, truncated or mismatched pair is deleted
and rebuilt.

**tf.data.** :func:`training_batches` shuffles row indices (seeded, reshuffled each epoch),
repeats, batches, gathers the batch from the memory map in parallel, converts to float32,
augments (stateless, per image) and preprocesses on the fly, and prefetches. Shapes are
static so XLA compiles one program. :func:`inference_batches` is the same without
shuffling, repetition or augmentation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import open_atomic
from ..cache import key_for
from ..progress import progress

log = logging.getLogger("bmbench.run")

#: Bump when decoding or resizing changes, so cached image arrays are rebuilt.
IMAGE_CACHE_VERSION = 1

#: Images decoded per work unit (and per worker task when ``train.jobs > 1``).
CHUNK = 256


@dataclass(frozen=True)
class ImageSet:
    """Decoded images of a list of files.

    images: ``uint8[n, s, s, 3]`` RGB (a read-only memory map); rows where ``valid`` is
        False are zeros. valid: ``bool[n]``. digests: sha256 hex of each file's bytes (the
        per-image part of downstream cache keys). key: the cache key of the whole set.
    """

    images: np.ndarray
    valid: np.ndarray
    digests: tuple[str, ...]
    key: str

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])


def file_digest(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes, or ``missing:<path>`` when it cannot be read (decoding
    then reports the problem under the run's bad-image policy)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return f"missing:{path}"
    return h.hexdigest()


def load_images(paths: Sequence[str], ctx, label: str = "decoding images",
                size: int | None = None) -> ImageSet:
    """Decoded images of ``paths`` at ``size`` (default: ``dataset.image_size``), from the
    cache under ``ctx.cache_dir / "images"`` or decoded now (``train.jobs`` workers) and
    cached. Unreadable files follow ``dataset.on_bad_image`` and are recorded in
    ``ctx.reader.skipped`` on hits too."""
    reader = ctx.reader
    size = int(size or reader.size)
    paths = [str(p) for p in paths]
    digests = tuple(file_digest(p) for p in paths)
    key = key_for("bmbench.images", IMAGE_CACHE_VERSION, size, reader.keep_aspect, digests)
    if not paths:  # nothing to cache (and an empty array cannot be memory-mapped)
        return ImageSet(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, bool), digests, key)
    store = _Store(Path(ctx.cache_dir) / "images", key)
    cached = store.read(len(paths), size)
    if cached is None:
        images, valid = _decode_all(paths, ctx, size, label)
        store.write(images, valid)
        cached = store.read(len(paths), size)
        if cached is None:  # the cache folder is unusable: keep the decoded arrays
            cached = images, valid
    else:
        for path in np.asarray(paths)[~cached[1]]:
            reader.read(path)  # raises under on_bad_image=error; records the skip otherwise
    return ImageSet(cached[0], cached[1], digests, key)


class _Store:
    """``<key>.npy`` (images) and ``<key>.valid.npy`` in a two-level sharded folder."""

    def __init__(self, root: Path, key: str):
        self.folder = root / key[:2]
        self.images = self.folder / f"{key}.npy"
        self.valid = self.folder / f"{key}.valid.npy"

    def read(self, n: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            valid = np.load(self.valid, allow_pickle=False)
            images = np.load(self.images, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            self._discard()
            return None
        if (images.shape, images.dtype, valid.shape, valid.dtype) != (
                (n, size, size, 3), np.uint8, (n,), np.bool_):
            self._discard()
            return None
        return images, valid

    def write(self, images: np.ndarray, valid: np.ndarray) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic_save(self.valid, valid)
            _atomic_save(self.images, images)
        except OSError as exc:
            log.warning("cannot write the image cache in %s (%s); continuing without it",
                        self.folder, exc.strerror or exc)

    def _discard(self) -> None:
        log.warning("image cache entry %s is damaged or stale; rebuilding it", self.images.name)
        for p in (self.images, self.valid):
            p.unlink(missing_ok=True)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with open_atomic(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _decode_all(paths: list[str], ctx, size: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    reader = ctx.reader
    images = np.zeros((len(paths), size, size, 3), np.uint8)
    valid = np.zeros(len(paths), bool)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    settings = (size, reader.keep_aspect, reader.on_bad_image, reader.max_pixels)
    results = _decoded_chunks(chunks, settings, ctx.jobs)
    start = 0
    with progress(len(paths), label) as bar:
        for chunk, (block, ok, skipped) in zip(chunks, results):
            images[start:start + len(chunk)] = block
            valid[start:start + len(chunk)] = ok
            reader.skipped.update(skipped)
            start += len(chunk)
            bar.update(len(chunk))
    return images, valid


def _decoded_chunks(chunks: list[list[str]], settings: tuple, jobs: int):
    """``_decode_chunk`` results in order; with ``jobs > 1`` from that many threads (JPEG/PNG
    decoding and resizing release the GIL, and nothing needs pickling back), at most
    ``2 * jobs`` chunks in flight."""
    if jobs == 1 or len(chunks) <= 1:
        yield from (_decode_chunk(chunk, settings) for chunk in chunks)
        return
    with ThreadPoolExecutor(jobs) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(_decode_chunk, chunk, settings))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _decode_chunk(paths: list[str], settings: tuple) -> tuple[np.ndarray, np.ndarray, dict]:
    """Worker: ``(uint8[m, s, s, 3], bool[m], {path: reason})`` for one chunk of files."""
    from ..datasets.imageio import ImageReader

    size = settings[0]
    reader = ImageReader(*settings)
    block = np.zeros((len(paths), size, size, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        image = reader.read(path)
        if image is not None:
            block[i], ok[i] = image, True
    return block, ok, reader.skipped


# --- tf.data -------------------------------------------------------------------------------

Preprocess = Callable  # float32[b, s, s, 3] in [0, 255] -> model input (same shape)


def _gather(images: np.ndarray, size: int, batch: int | None = None):
    """A tf.data map function: ``int64[b]`` row indices -> ``uint8[b, s, s, 3]`` (``b`` is
    static when ``batch`` is given)."""
    import tensorflow as tf

    def take(rows):
        return np.ascontiguousarray(images[rows])

    def fn(rows):
        batch_of = tf.numpy_function(take, [rows], tf.uint8, stateful=False)
        return tf.ensure_shape(batch_of, [batch, size, size, 3])
    return fn


def _options():
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def training_batches(images: ImageSet, rows: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                     batch_size: int, augment: Sequence[str], seed: int,
                     preprocess: Preprocess | None = None):
    """An endless ``tf.data.Dataset`` of ``(x float32[b, s, s, 3], y int32[b], w float32[b])``
    over ``images.images[rows]`` with labels ``labels`` ``(len(rows),)`` and per-sample
    weights ``weights`` ``(len(rows),)``; one epoch is ``ceil(len(rows) / batch_size)`` steps.
    The order is reshuffled every epoch from ``seed``; augmentation seeds are
    ``(seed, step)``."""
    import tensorflow as tf

    from .augment import augment_batch

    rows = np.asarray(rows, np.int64)
    y = tf.constant(np.asarray(labels, np.int32))
    w = tf.constant(np.asarray(weights, np.float32))
    gather = _gather(images.images, images.size, batch_size)
    names = [a for a in augment if a != "none"]

    def make(step, pos):
        x = augment_batch(gather(tf.gather(rows, pos)), names, tf.stack([tf.cast(seed, tf.int64), step]))
        if preprocess is not None:
            x = preprocess(x)
        return x, tf.gather(y, pos), tf.gather(w, pos)

    ds = (tf.data.Dataset.range(len(rows))
          .shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
          .repeat()
          .batch(batch_size, drop_remainder=True)
          .enumerate()
          .map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))
    return ds.with_options(_options())


def inference_batches(images: ImageSet, rows: np.ndarray, batch_size: int,
                      preprocess: Preprocess | None = None, labels: np.ndarray | None = None):
    """A finite, ordered ``tf.data.Dataset`` of ``x float32[b, s, s, 3]`` (or ``(x, y)``
    when ``labels`` ``(len(rows),)`` are given) over ``images.images[rows]``."""
    import tensorflow as tf

    rows = np.asarray(rows, np.int64)
    gather = _gather(images.images, images.size)
    y = tf.constant(np.asarray(labels if labels is not None else np.zeros(len(rows)), np.int32))

    def make(pos):
        x = tf.cast(gather(tf.gather(rows, pos)), tf.float32)
        if preprocess is not None:
            x = preprocess(x)
        return (x, tf.gather(y, pos)) if labels is not None else x

    ds = (tf.data.Dataset.range(len(rows)).batch(batch_size)
          .map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))
    return ds.with_options(_options())


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per pass over ``n`` rows: ``ceil(n / batch_size)``."""
    return max(1, -(-n // batch_size))


def pipeline_rate(dataset, batches: int, batch_size: int) -> float:
    """Images per second the input pipeline alone delivers over ``batches`` batches (no
    model), to compare with the training rate: the pipeline must outpace the model."""
    it = iter(dataset)
    next(it)  # warm-up: tracing and the first gather
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / max(time.perf_counter() - t0, 1e-9)

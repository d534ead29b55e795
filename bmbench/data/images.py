"""The image stage: the one way a data set row becomes pixels, for every family.

:class:`ImageSource` decodes a file (:mod:`.imageio`), applies the recipe's preprocessing
steps (:mod:`.preprocessing`; none by default) and resizes or pads to ``size``. Its
:attr:`~ImageSource.identity` is a hash of every setting that changes the pixels it returns;
every content cache (handcrafted features, decoded images, backbone embeddings, audit
descriptors) keys its entries with :meth:`~ImageSource.key`, i.e. the file's bytes plus that
identity, so a new step or setting can never reuse stale results.

**Decoded-image cache.** :func:`load_images` decodes a list of files once into one
``uint8[n, s, s, 3]`` ``.npy`` file under ``<cache>/images/``, read back as a memory map
(data sets larger than memory work; the OS page cache keeps hot ones in RAM). A ``valid``
mask (False where a file could not be decoded under ``dataset.on_bad_image: skip``) is
stored beside it, and last ``<key>.sum.json`` with the sha256 of both (of a fixed sample of
images when the entry is larger than 64 MiB). All are written atomically; a missing,
truncated, mismatched or altered entry is deleted and rebuilt with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.atomic import open_atomic, write_text
from ..core.cache import key_for
from ..core.errors import DatasetError
from ..core.hashing import file_sha256
from ..core.progress import progress
from .imageio import DEFAULT_MAX_PIXELS, SKIP_ADVICE, centre_field, read_rgb, read_rgb_draft, rescale, resize

log = logging.getLogger(__name__)

#: Bump when decoding, preprocessing or resizing changes pixels, so every cache rebuilds.
IMAGE_STAGE_VERSION = 1

#: Bump when the layout of the decoded-image cache files changes.
IMAGE_CACHE_VERSION = 1

#: Images decoded per work unit (and per worker task when ``jobs > 1``).
CHUNK = 256


@dataclass
class ImageSource:
    """Decode -> physical rescale -> preprocessing steps -> resize/pad, under one bad-image policy.

    size: output side in px (``None``: native size, no resizing). keep_aspect: pad to a
    square with the border's median colour instead of stretching. on_bad_image: ``error``
    raises on an unreadable file; ``skip`` records it in :attr:`skipped` (path -> reason)
    and returns None (logged once per file unless ``warn_skipped`` is off). max_pixels: decompression-bomb guard. steps: fitted preprocessing
    steps (:class:`~bmbench.data.preprocessing.Step`), applied in order to the decoded
    ``uint8[H, W, 3]`` image. draft_side: decode JPEGs DCT-scaled so that the longer side
    stays at least this many px (the audit's fast path; much faster than a full decode).
    scale: resampling factor applied right after decoding, before the steps (the images'
    µm/px over the target µm/px: brings cells of every lab to one physical size). field_px:
    side, px after scaling, of the centred square kept (cropped or padded with the
    background colour): one field of view in µm for every image; None keeps the whole image.
    root_scales: ``(folder, scale)`` pairs for files under other data sets' folders that
    share this source (few-shot adaptation images in the training set): they are resampled
    by their own data set's factor instead of ``scale``.
    """

    size: int | None = None
    keep_aspect: bool = False
    on_bad_image: str = "error"
    max_pixels: int = DEFAULT_MAX_PIXELS
    steps: tuple = ()
    draft_side: int | None = None
    scale: float = 1.0
    field_px: int | None = None
    root_scales: tuple[tuple[str, float], ...] = ()
    skipped: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: log each skipped file as it is met (off where the caller lists them itself: predict)
    warn_skipped: bool = field(default=True, compare=False, repr=False)

    @property
    def identity(self) -> str:
        """Hash of every setting that changes the returned pixels (not the bad-image policy)."""
        physical = [("scale", round(self.scale, 9), self.field_px)] if self.scale != 1 or self.field_px else []
        if self.root_scales:
            physical.append(("root_scales", [(r, round(f, 9)) for r, f in self.root_scales]))
        return key_for("bmbench.image_stage", IMAGE_STAGE_VERSION, self.size, self.keep_aspect,
                       self.draft_side, [step.identity for step in self.steps], *physical)

    def key(self, digest: bytes | str, namespace: str, version: int, *settings, path=None) -> str:
        """Cache key of one file's output of a stage downstream (features, embeddings...):
        the file's sha256 ``digest``, this identity, ``namespace``, ``version``, ``settings``;
        with :attr:`root_scales`, also the scale of that file (``path``), so one file's bytes
        under two data sets' folders never share a key."""
        own = (self._scale_of(str(path)),) if self.root_scales and path is not None else ()
        return key_for(namespace, version, *settings, *own, self.identity, digest)

    def at(self, size: int | None) -> "ImageSource":
        """The same source at another output size (sharing the skip record)."""
        if size == self.size:
            return self
        return dataclasses.replace(self, size=size)  # the same skip dict travels along

    def with_scale(self, scale: float, field_px: int | None) -> "ImageSource":
        """The same source resampled by ``scale`` and cut to ``field_px`` (see the class)."""
        return dataclasses.replace(self, scale=float(scale), field_px=field_px)

    def with_root_scales(self, pairs) -> "ImageSource":
        """The same source, resampling files under each ``(folder, scale)`` by that scale."""
        return dataclasses.replace(self, root_scales=tuple((str(r), float(f)) for r, f in pairs))

    def _scale_of(self, path: str) -> float:
        for root, factor in self.root_scales:
            if path.startswith(root.rstrip("/") + "/"):
                return factor
        return self.scale

    def with_steps(self, steps: tuple) -> "ImageSource":
        """The same source with other preprocessing ``steps`` (sharing the skip record)."""
        return dataclasses.replace(self, steps=tuple(steps))

    def decode(self, path: str | os.PathLike, data: bytes | None = None) -> np.ndarray:
        """``uint8[H, W, 3]`` RGB of ``path`` after the preprocessing steps, before resizing;
        raises :class:`DatasetError`. ``data``: the file's bytes, when already read."""
        if self.draft_side is not None:
            if data is None:
                data = _read_bytes(path)
            image = read_rgb_draft(data, str(path), self.max_pixels, self.draft_side)
        else:
            image = read_rgb(path, self.max_pixels)
        image = rescale(image, self._scale_of(str(path)))
        if self.field_px:
            image = centre_field(image, self.field_px)
        for step in self.steps:
            image = step.apply(image)
        return image

    def read(self, path: str | os.PathLike, data: bytes | None = None) -> np.ndarray | None:
        """:meth:`decode` then resize to :attr:`size`; None for a skipped unreadable file."""
        try:
            image = self.decode(path, data)
        except DatasetError as exc:
            if self.on_bad_image == "error":
                raise
            reason = str(exc).removesuffix(SKIP_ADVICE)  # already skipping: the advice would mislead
            if str(path) not in self.skipped and self.warn_skipped:
                log.warning("skipping unreadable image: %s", reason)
            self.skipped[str(path)] = reason
            return None
        if self.size:
            image = resize(image, self.size, self.keep_aspect)
        return image

    def __call__(self, path):
        return self.read(path)


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None


def file_digest(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes, or ``missing:<path>`` when it cannot be read (decoding
    then reports the problem under the bad-image policy)."""
    try:
        return file_sha256(path)
    except OSError:
        return f"missing:{path}"


@dataclass(frozen=True)
class ImageSet:
    """Decoded images of a list of files.

    images: ``uint8[n, s, s, 3]`` RGB (a read-only memory map); rows where ``valid`` is
        False are zeros. valid: ``bool[n]``. digests: sha256 hex of each file's bytes.
    key: the cache key of the whole set. identity: the :class:`ImageSource` identity that
        made the pixels (the per-image keys downstream combine it with ``digests``).
    """

    images: np.ndarray
    valid: np.ndarray
    digests: tuple[str, ...]
    key: str
    identity: str = ""

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])


def load_images(paths: Sequence[str], source: ImageSource, cache_dir: str | os.PathLike,
                jobs: int = 1, label: str = "decoding images") -> ImageSet:
    """Images of ``paths`` from ``source`` (whose ``size`` must be set), from the cache under
    ``cache_dir / "images"`` or decoded now (``jobs`` threads) and cached. Unreadable files
    follow ``source.on_bad_image`` and are recorded in ``source.skipped`` on hits too."""
    size = int(source.size)
    paths = [str(p) for p in paths]
    digests = tuple(file_digest(p) for p in paths)
    key = key_for("bmbench.images", IMAGE_CACHE_VERSION, source.identity, digests)
    if not paths:  # nothing to cache (and an empty array cannot be memory-mapped)
        return ImageSet(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, bool), digests, key,
                        source.identity)
    store = _Store(Path(cache_dir) / "images", key)
    cached = store.read(len(paths), size)
    if cached is None:
        images, valid = _decode_all(paths, source, jobs, label)
        store.write(images, valid)
        cached = store.read(len(paths), size)
        if cached is None:  # the cache folder is unusable: keep the decoded arrays
            cached = images, valid
    else:
        for path in np.asarray(paths)[~cached[1]]:
            source.read(path)  # raises under on_bad_image=error; records the skip otherwise
    return ImageSet(cached[0], cached[1], digests, key, source.identity)


class _Store:
    """``<key>.npy`` (images), ``<key>.valid.npy`` and ``<key>.sum.json`` (their digests,
    written last) in a two-level sharded folder."""

    def __init__(self, root: Path, key: str):
        self.folder = root / key[:2]
        self.images = self.folder / f"{key}.npy"
        self.valid = self.folder / f"{key}.valid.npy"
        self.sums = self.folder / f"{key}.sum.json"

    def read(self, n: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            valid = np.load(self.valid, allow_pickle=False)
            images = np.load(self.images, mmap_mode="r", allow_pickle=False)
            sums = json.loads(self.sums.read_text())
        except FileNotFoundError:
            if self.images.exists() or self.valid.exists():  # a pair without digests: not trusted
                self._discard()
            return None
        except (OSError, ValueError, EOFError):
            self._discard()
            return None
        if (images.shape, images.dtype, valid.shape, valid.dtype) != (
                (n, size, size, 3), np.uint8, (n,), np.bool_) or sums != _digests(valid, images):
            self._discard()
            return None
        return images, valid

    def write(self, images: np.ndarray, valid: np.ndarray) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path, array in ((self.valid, valid), (self.images, images)):
                with open_atomic(path, "wb") as f:
                    np.save(f, array, allow_pickle=False)
            write_text(self.sums, json.dumps(_digests(valid, images)))
        except OSError as exc:
            log.warning("cannot write the image cache in %s (%s); continuing without it",
                        self.folder, exc.strerror or exc)

    def _discard(self) -> None:
        log.warning("image cache entry %s is damaged or stale; rebuilding it", self.images.name)
        for p in (self.images, self.valid, self.sums):
            p.unlink(missing_ok=True)


#: Decoded-image caches up to this size are hashed whole on every read (about 0.1 s);
#: larger ones by :data:`SAMPLED_ROWS` evenly spaced images, so that a cached rerun of a
#: large data set does not read gigabytes it may never touch.
HASH_WHOLE_BYTES = 64 << 20
SAMPLED_ROWS = 64


def _digests(valid: np.ndarray, images: np.ndarray) -> dict:
    """Content digests of a cache entry: sha256 of the ``valid`` mask and of the images
    (all of them, or a fixed sample of rows when larger than :data:`HASH_WHOLE_BYTES`)."""
    h = hashlib.sha256(f"{images.shape}".encode())
    if images.nbytes <= HASH_WHOLE_BYTES:
        h.update(memoryview(np.ascontiguousarray(images)).cast("B"))
        sampled = "all"
    else:
        rows = np.unique(np.linspace(0, len(images) - 1, SAMPLED_ROWS).astype(np.int64))
        h.update(np.ascontiguousarray(images[rows]).tobytes())
        sampled = f"{len(rows)} rows"
    return {"valid": hashlib.sha256(np.ascontiguousarray(valid, np.bool_).tobytes()).hexdigest(),
            "images": h.hexdigest(), "hashed": sampled}


def _decode_all(paths: list[str], source: ImageSource, jobs: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    size = int(source.size)
    images = np.zeros((len(paths), size, size, 3), np.uint8)
    valid = np.zeros(len(paths), bool)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    start = 0
    with progress(len(paths), label) as bar:
        for chunk, (block, ok, skipped) in zip(chunks, _decoded_chunks(chunks, source, jobs)):
            images[start:start + len(chunk)] = block
            valid[start:start + len(chunk)] = ok
            source.skipped.update(skipped)
            start += len(chunk)
            bar.update(len(chunk))
    return images, valid


def _decoded_chunks(chunks: list[list[str]], source: ImageSource, jobs: int):
    """``_decode_chunk`` results in order; with ``jobs > 1`` from that many threads (JPEG/PNG
    decoding and resizing release the GIL, and nothing needs pickling back), at most
    ``2 * jobs`` chunks in flight."""
    if jobs == 1 or len(chunks) <= 1:
        yield from (_decode_chunk(chunk, source) for chunk in chunks)
        return
    with ThreadPoolExecutor(jobs) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.submit(_decode_chunk, chunk, source))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _decode_chunk(paths: list[str], source: ImageSource) -> tuple[np.ndarray, np.ndarray, dict]:
    """Worker: ``(uint8[m, s, s, 3], bool[m], {path: reason})`` for one chunk of files."""
    own = dataclasses.replace(source, skipped={})  # a skip record of its own: threads run in parallel
    size = int(source.size)
    block = np.zeros((len(paths), size, size, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        image = own.read(path)
        if image is not None:
            block[i], ok[i] = image, True
    return block, ok, own.skipped

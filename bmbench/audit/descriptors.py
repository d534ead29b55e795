"""Cheap per-image descriptors for the leakage audit, computed once per file and cached.

Every image is decoded once (JPEGs at a reduced DCT scale, so a 2,000 px file costs about
as much as a 250 px one) and shrunk to a *work image* whose longer side is
:data:`WORK_SIDE` px. From it come three descriptors:

``hist``
    A joint RGB colour histogram (``HIST_BINS``\\ :sup:`3` bins) of the pixels that are not
    near-black, L1-normalised and square-rooted, so the Euclidean distance of two rows is
    ``sqrt(2)`` times their Hellinger distance. Near-black pixels (every channel below
    :data:`BLACK_LEVEL`) are the padding that rotation/shift augmentation adds; stained
    cells never contain them. Invariant to flips, rotations and small crops.
``phash``
    A DCT perceptual hash of a ``HASH_SIDE`` x ``HASH_SIDE`` grey thumbnail (the work image
    squashed to a square): the ``HASH_KEEP`` x ``HASH_KEEP`` lowest frequencies without the
    DC term, each bit = coefficient above their median (255 bits, stored in 4 ``uint64``).
    It is computed for all 8 flips/90-degree rotations of the thumbnail (the dihedral
    group), so ``min_t hamming(phash[a, t], phash[b, 0])`` is a flip/rotation-invariant
    distance. Robust to re-encoding, resizing and brightness/contrast changes.
``keypoints``
    Up to :data:`ORB_FEATURES` ORB keypoints (position, 256-bit descriptor) of the grey work
    image and of its mirror image, for geometric verification of candidate pairs (any
    rotation angle, shift, crop, flip): see :mod:`bmbench.audit.neighbours`.

Descriptors are cached in an :class:`~bmbench.core.cache.ArrayCache` keyed by the sha256 of the
file bytes, :data:`DESCRIPTOR_VERSION` and the settings above; a cache hit skips decoding.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..core.cache import ArrayCache
from ..core.parallel import chunked
from ..core.errors import DatasetError
from ..data.imageio import resize_longest
from ..data.images import ImageSource

#: Bump whenever any descriptor value can change: it is part of every cache key.
DESCRIPTOR_VERSION = 2
WORK_SIDE = 128
HIST_BINS = 8
BLACK_LEVEL = 24
HASH_SIDE = 32
HASH_KEEP = 16
HASH_BITS = HASH_KEEP * HASH_KEEP - 1  # 255: the DC term is left out
HASH_WORDS = 4
ORB_FEATURES = 200
ORB_PATCH = 15
N_TRANSFORMS = 8
CHUNK_SIZE = 32

SETTINGS = {"work_side": WORK_SIDE, "hist_bins": HIST_BINS, "black_level": BLACK_LEVEL,
            "hash_side": HASH_SIDE, "hash_keep": HASH_KEEP, "orb_features": ORB_FEATURES,
            "orb_patch": ORB_PATCH}
_HEADER = 6  # int32: version, height, width, keypoints (original), keypoints (mirror), spare


@dataclass(frozen=True)
class ImageDescriptors:
    """Descriptors of one image (see the module docstring).

    hist: ``float32[HIST_BINS**3]``; phash: ``uint64[8, HASH_WORDS]`` (transform 0 is the
    image as it is); points: two ``float32[k, 2]`` arrays (x, y in work-image pixels) and
    descriptors: two ``uint8[k, 32]`` arrays, for the image and its mirror (x flipped);
    shape: the decoded image's (height, width).
    """

    hist: np.ndarray
    phash: np.ndarray
    points: tuple[np.ndarray, np.ndarray]
    descriptors: tuple[np.ndarray, np.ndarray]
    shape: tuple[int, int]


@dataclass
class Descriptors:
    """Descriptors of ``n`` images, stacked; rows follow the input paths.

    ok: ``bool[n]``, False for files that could not be decoded (their ``hist`` row is NaN
    and their ``phash`` zero; ``errors`` maps their index to the reason).
    keys: the cache key of every file (its bytes + descriptor settings; ``""`` when the
    file could not be read), so results derived from all descriptors can be cached too.
    Keypoints of image ``i``, orientation ``o`` (0 = as is, 1 = mirrored) are rows
    ``kp_offsets[i, o, 0]:kp_offsets[i, o, 1]`` of ``kp_points`` / ``kp_descriptors``.
    """

    hist: np.ndarray
    phash: np.ndarray
    kp_points: np.ndarray
    kp_descriptors: np.ndarray
    kp_offsets: np.ndarray
    shapes: np.ndarray
    ok: np.ndarray
    errors: dict[int, str]
    keys: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ok)

    def keypoints(self, i: int, orientation: int = 0) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.kp_offsets[i, orientation]
        return self.kp_points[a:b], self.kp_descriptors[a:b]


# --- one image -----------------------------------------------------------------------------

def audit_source(max_pixels: int = 50_000_000) -> ImageSource:
    """The image stage as the audit reads files: raw pixels (no preprocessing steps), JPEGs
    decoded DCT-scaled so their longer side stays at least :data:`WORK_SIDE` px."""
    return ImageSource(max_pixels=max_pixels, draft_side=WORK_SIDE)


def work_image(rgb: np.ndarray, side: int | None = None) -> np.ndarray:
    """``rgb`` resized so its longer side is ``side`` (default :data:`WORK_SIDE`) px, aspect
    ratio kept."""

    return np.ascontiguousarray(resize_longest(rgb, side or WORK_SIDE))


def colour_histogram(work: np.ndarray) -> np.ndarray:
    """Square-rooted, L1-normalised joint RGB histogram of the non-black pixels."""
    import cv2

    mask = (work.max(axis=2) >= BLACK_LEVEL).astype(np.uint8)
    if not mask.any():
        mask = None
    hist = cv2.calcHist([np.ascontiguousarray(work)], [0, 1, 2], mask, [HIST_BINS] * 3,
                        [0, 256] * 3).ravel()
    return np.sqrt(hist / max(float(hist.sum()), 1.0)).astype(np.float32)


def dihedral(square: np.ndarray) -> np.ndarray:
    """The 8 flips/rotations of ``(..., s, s)`` arrays: ``(..., 8, s, s)``, identity first."""
    out = []
    for k in range(4):
        for x in (square, square[..., ::-1]):
            out.append(np.rot90(x, k, axes=(-2, -1)))
    return np.stack(out, axis=-3)


def perceptual_hashes(grey: np.ndarray) -> np.ndarray:
    """DCT hashes of ``uint8[..., HASH_SIDE, HASH_SIDE]`` thumbnails under the 8 dihedral
    transforms: ``uint64[..., 8, HASH_WORDS]`` (bit 255 unused, always 0)."""
    from scipy.fft import dctn

    coeffs = dctn(dihedral(grey.astype(np.float32)), axes=(-2, -1), norm="ortho")
    low = coeffs[..., :HASH_KEEP, :HASH_KEEP].reshape(*coeffs.shape[:-2], -1)[..., 1:]
    bits = low > np.median(low, axis=-1, keepdims=True)
    pad = np.zeros((*bits.shape[:-1], HASH_WORDS * 64 - bits.shape[-1]), bool)
    packed = np.packbits(np.concatenate([bits, pad], axis=-1), axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view(np.uint64)


def _orb():
    import cv2

    return cv2.ORB_create(nfeatures=ORB_FEATURES, scaleFactor=1.2, nlevels=4, edgeThreshold=ORB_PATCH,
                          patchSize=ORB_PATCH, fastThreshold=10)


def keypoints(grey: np.ndarray, orb=None) -> tuple[np.ndarray, np.ndarray]:
    """ORB keypoints of a grey image: ``(float32[k, 2] positions, uint8[k, 32] descriptors)``."""
    orb = orb or _orb()
    kps, des = orb.detectAndCompute(np.ascontiguousarray(grey), None)
    if des is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in kps], np.float32).reshape(-1, 2), des.astype(np.uint8)


def describe(rgb: np.ndarray, orb=None) -> ImageDescriptors:
    """All descriptors of one decoded ``uint8[H, W, 3]`` RGB image."""
    return describe_many([rgb], orb)[0]


def describe_many(images: Sequence[np.ndarray], orb=None) -> list[ImageDescriptors]:
    """:func:`describe` for several images; the hashes are computed in one vectorised step."""
    import cv2

    if not images:
        return []
    orb = orb or _orb()
    works = [work_image(rgb) for rgb in images]
    greys = [cv2.cvtColor(w, cv2.COLOR_RGB2GRAY) for w in works]
    thumbs = np.stack([cv2.resize(g, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA) for g in greys])
    hashes = perceptual_hashes(thumbs)
    out = []
    for rgb, work, grey, h in zip(images, works, greys, hashes):
        (p0, d0), (p1, d1) = keypoints(grey, orb), keypoints(np.ascontiguousarray(grey[:, ::-1]), orb)
        out.append(ImageDescriptors(colour_histogram(work), h, (p0, p1), (d0, d1),
                                    (int(rgb.shape[0]), int(rgb.shape[1]))))
    return out


# --- cache records ---------------------------------------------------------------------------

def pack(d: ImageDescriptors) -> np.ndarray:
    """One ``uint8`` record holding every descriptor of an image (for the cache)."""
    header = np.array([DESCRIPTOR_VERSION, *d.shape, len(d.points[0]), len(d.points[1]), 0], np.int32)
    parts = [header, d.hist.astype(np.float32), d.phash.astype(np.uint64)]
    for pts, des in zip(d.points, d.descriptors):
        parts += [pts.astype(np.float32), des.astype(np.uint8)]
    return np.concatenate([np.ascontiguousarray(p).view(np.uint8).ravel() for p in parts])


def unpack(record: np.ndarray) -> ImageDescriptors | None:
    """The inverse of :func:`pack`; None when the record is not one of this version."""
    raw = np.ascontiguousarray(record, np.uint8)
    n_hist, n_hash = HIST_BINS ** 3, N_TRANSFORMS * HASH_WORDS
    if raw.size < _HEADER * 4:
        return None
    version, h, w, k0, k1, _ = raw[:_HEADER * 4].view(np.int32)
    sizes = [n_hist * 4, n_hash * 8, k0 * 8, k0 * 32, k1 * 8, k1 * 32]
    if version != DESCRIPTOR_VERSION or min(k0, k1) < 0 or raw.size != _HEADER * 4 + sum(sizes):
        return None
    chunks, at = [], _HEADER * 4
    for size in sizes:
        chunks.append(raw[at:at + size])
        at += size
    return ImageDescriptors(
        chunks[0].view(np.float32).copy(), chunks[1].view(np.uint64).reshape(N_TRANSFORMS, HASH_WORDS).copy(),
        (chunks[2].view(np.float32).reshape(-1, 2).copy(), chunks[4].view(np.float32).reshape(-1, 2).copy()),
        (chunks[3].reshape(-1, 32).copy(), chunks[5].reshape(-1, 32).copy()), (int(h), int(w)))


def record_key(data: bytes, source: ImageSource | None = None) -> str:
    """Cache key of one image file's descriptors: its bytes, the image stage's identity, the
    settings, the version."""
    return (source or audit_source()).key(hashlib.sha256(data).digest(), "bmbench.audit", DESCRIPTOR_VERSION,
                                          SETTINGS)


# --- many images -----------------------------------------------------------------------------

def _describe_chunk(paths, max_pixels, cache):
    """``[(ImageDescriptors or None, error or None, key)]`` for ``paths``: cache hits are read,
    the rest decoded once, described together and cached."""
    import cv2

    cv2.setNumThreads(1)
    source = audit_source(max_pixels)
    out: list = [None] * len(paths)
    todo, images, keys = [], [], []
    for i, path in enumerate(paths):
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            out[i] = (None, f"{path}: cannot read ({exc.strerror})", "")
            continue
        key = record_key(data, source)
        hit = cache.get(key) if cache is not None else None
        found = unpack(hit) if hit is not None else None
        if found is not None:
            out[i] = (found, None, key)
            continue
        try:
            images.append(source.decode(path, data))
        except DatasetError as exc:
            out[i] = (None, str(exc), key)
            continue
        todo.append(i)
        keys.append(key)
    for i, key, d in zip(todo, keys, describe_many(images)):
        if cache is not None:
            cache.put(key, pack(d))
        out[i] = (d, None, key)
    return out


def describe_files(paths: Sequence[str | os.PathLike], jobs: int = 1, cache: ArrayCache | None = None,
                   max_pixels: int = 50_000_000,
                   progress: Callable[[int], None] | None = None) -> Descriptors:
    """Descriptors of every file, in parallel (``jobs`` joblib processes), streaming in
    chunks of at most :data:`CHUNK_SIZE` (:func:`~bmbench.core.parallel.chunked`); unreadable
    files are recorded, never raised."""
    paths = [str(p) for p in paths]
    chunks = chunked(paths, jobs, CHUNK_SIZE)
    if jobs == 1 or len(chunks) <= 1:
        results = (_describe_chunk(c, max_pixels, cache) for c in chunks)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, return_as="generator", pre_dispatch="2*n_jobs")(
            delayed(_describe_chunk)(c, max_pixels, cache) for c in chunks)
    stack = _Stack(len(paths))
    for chunk_result in results:
        for item in chunk_result:
            stack.add(*item)
        if progress is not None:
            progress(stack.i)
    return stack.result()


class _Stack:
    """Descriptors of ``n`` images filled in as they arrive, each image's keypoints copied
    once into buffers sized for the most ORB can return (``np.empty``: the unused tail is
    never touched, so it takes no memory); holding every image's own arrays and then
    concatenating them took twice the descriptors' memory at the end."""

    def __init__(self, n: int):
        self.hist = np.full((n, HIST_BINS ** 3), np.nan, np.float32)
        self.phash = np.zeros((n, N_TRANSFORMS, HASH_WORDS), np.uint64)
        self.shapes = np.zeros((n, 2), np.int64)
        self.offsets = np.zeros((n, 2, 2), np.int64)
        self.ok = np.zeros(n, bool)
        self.points = np.empty((2 * ORB_FEATURES * n, 2), np.float32)
        self.descs = np.empty((2 * ORB_FEATURES * n, 32), np.uint8)
        self.errors: dict[int, str] = {}
        self.keys: list[str] = []
        self.i = self.at = 0

    def add(self, d: ImageDescriptors | None, error: str | None, key: str) -> None:
        i, self.i = self.i, self.i + 1
        self.keys.append(key)
        if d is None:
            self.errors[i] = error
            self.offsets[i] = self.at
            return
        self.hist[i], self.phash[i], self.shapes[i], self.ok[i] = d.hist, d.phash, d.shape, True
        for o in (0, 1):
            k = len(d.points[o])
            if self.at + k > len(self.points):  # more than ORB's limit (ties, foreign records)
                self.points = np.concatenate([self.points[:self.at], np.empty((k + len(self.points), 2), np.float32)])
                self.descs = np.concatenate([self.descs[:self.at], np.empty((k + len(self.descs), 32), np.uint8)])
            self.points[self.at:self.at + k] = d.points[o]
            self.descs[self.at:self.at + k] = d.descriptors[o]
            self.offsets[i, o] = (self.at, self.at + k)
            self.at += k

    def result(self) -> Descriptors:
        return Descriptors(self.hist, self.phash, self.points[:self.at], self.descs[:self.at], self.offsets,
                           self.shapes, self.ok, self.errors, self.keys)

"""Turn images into handcrafted feature vectors: settings, names, one image, many images.

``extract_one`` segments an image, crops to the cell, and concatenates the selected
families in :data:`~bmbench.features.registry.FEATURE_FAMILIES` order of ``settings.families``.
``extract_many`` does that for files, in parallel, streaming, with an optional disk cache.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.atomic import write_json
from ..core.cache import ArrayCache
from ..core.parallel import chunked
from ..data.imageio import resize_longest
from ..data.images import ImageSource
from .regions import CellView
from .registry import FEATURE_FAMILIES, check_families, specs_for
from .segmentation import Segmentation, check_method, segment

#: Bump whenever any feature's value can change (segmentation, formulas, defaults): it is
#: part of every cache key, so stale cached vectors are never reused.
FEATURE_VERSION = 6

#: Units of lengths and areas once the pixel size is known.
PHYSICAL_UNITS = {"px": "µm", "px^2": "µm^2"}

#: Flags a segmentation can raise, in bit order for the cached flag bitmask.
FLAG_NAMES: tuple[str, ...] = ("nucleus_empty", "cell_empty", "cell_touches_border", "cell_too_large")

#: Flag of an image the reader returned None for (its row is all NaN).
UNREADABLE = "unreadable"

#: Images are handed to workers in chunks of at most this many (see
#: :func:`~bmbench.core.parallel.chunked`), so results stream back in order and only a few
#: chunks are in flight at once.
CHUNK_SIZE = 32


@dataclass(frozen=True)
class FeatureSettings:
    """What to extract.

    families: feature families, in output order (default: all registered).
    segmentation: segmentation method name (see ``segmentation.METHODS``).
    image_size: if set, resize each image so its longer side has this many pixels before
        segmentation (INTER_AREA when shrinking, INTER_LINEAR when growing); shape features
        are then in pixels of the resized image. None (default) keeps native resolution,
        so sizes stay comparable only within one scanner/magnification.
    microns_per_pixel: the pixel size of the images handed in (after the image stage's
        resampling to ``dataset.target_microns_per_pixel``): lengths are then reported in
        µm and areas in µm² (the data dictionary's units follow). None: px and px².
    """

    families: tuple[str, ...] = field(default_factory=lambda: tuple(FEATURE_FAMILIES.names()))
    segmentation: str = "otsu"
    image_size: int | None = None
    microns_per_pixel: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", check_families(self.families))
        check_method(self.segmentation)
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 16):
            raise ValueError(f"image_size must be None or an integer >= 16, got {self.image_size!r}")
        if self.microns_per_pixel is not None and self.image_size is not None:
            raise ValueError("resizing every crop to one side (feature_size) loses the physical pixel "
                             "size; remove feature_size to report sizes in µm")

    def as_dict(self) -> dict:
        out = {"families": list(self.families), "segmentation": self.segmentation,
               "image_size": self.image_size}
        if self.microns_per_pixel is not None:  # absent otherwise: older cache keys stay valid
            out["microns_per_pixel"] = self.microns_per_pixel
        return out


def feature_names(settings: FeatureSettings = FeatureSettings()) -> list[str]:
    """Names of the features ``settings`` produce, in output order."""
    return [s.name for s in specs_for(settings.families)]


def data_dictionary(settings: FeatureSettings = FeatureSettings()) -> list[dict[str, str]]:
    """One ``{name, family, region, unit, description}`` dict per feature, in output order
    (units in µm and µm² where ``settings.microns_per_pixel`` is set)."""
    physical = settings.microns_per_pixel is not None
    return [{**s.as_dict(), "unit": PHYSICAL_UNITS.get(s.unit, s.unit) if physical else s.unit}
            for s in specs_for(settings.families)]


def write_data_dictionary(path: str | os.PathLike, settings: FeatureSettings = FeatureSettings()) -> Path:
    """Write the data dictionary as JSON to ``path`` (a directory gets ``features.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "features.json"
    doc = {"feature_version": FEATURE_VERSION, "settings": settings.as_dict(),
           "features": data_dictionary(settings)}
    write_json(path, doc)
    return path


def extract_one(image: np.ndarray, settings: FeatureSettings = FeatureSettings()
                ) -> tuple[np.ndarray, Segmentation]:
    """Features of one ``uint8[H, W, 3]`` RGB image: ``(float32[n_features], segmentation)``.

    The segmentation refers to the (possibly resized) image the features were computed on.
    """
    image = resize_longest(np.ascontiguousarray(image), settings.image_size)
    seg = segment(image, settings.segmentation)
    view = CellView(image, seg)
    parts = [FEATURE_FAMILIES.get(name).compute(view) for name in settings.families]
    values = np.concatenate(parts)
    if settings.microns_per_pixel is not None:
        values = values * _unit_factors(settings)
    return values.astype(np.float32), seg


def flags_to_mask(flags: Sequence[str]) -> int:
    return sum(1 << FLAG_NAMES.index(f) for f in flags)


def mask_to_flags(mask: int) -> tuple[str, ...]:
    return tuple(name for i, name in enumerate(FLAG_NAMES) if mask >> i & 1)


@lru_cache(maxsize=64)
def _unit_factors(settings: FeatureSettings) -> np.ndarray:
    """``float64[n_features]``: µm/px for lengths, its square for areas, 1 otherwise."""
    mpp = settings.microns_per_pixel
    power = {"px": 1, "px^2": 2}
    return np.array([mpp ** power.get(s.unit, 0) for s in specs_for(settings.families)])


@lru_cache(maxsize=64)
def _n_features(settings: FeatureSettings) -> int:
    return len(feature_names(settings))


def image_key(data: bytes, settings: FeatureSettings, source: ImageSource, path=None) -> str:
    """Cache key of one image file's features: its bytes, the image stage's identity (and
    the file's own scale, see :meth:`ImageSource.key`), the settings and FEATURE_VERSION."""
    return source.key(hashlib.sha256(data).digest(), "bmbench.features", FEATURE_VERSION, settings.as_dict(),
                      path=path)


def _extract_path(path, settings: FeatureSettings, source: ImageSource, cache: ArrayCache | None
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    key = None
    if cache is not None:
        with open(path, "rb") as f:
            key = image_key(f.read(), settings, source, path)
        hit = cache.get(key)
        if hit is not None and hit.shape == (_n_features(settings) + 1,):
            return hit[:-1], mask_to_flags(int(hit[-1]))
    image = source.read(path)
    if image is None:  # the source's policy skipped an unreadable file: not cached
        return np.full(_n_features(settings), np.nan, np.float32), (UNREADABLE,)
    vector, seg = extract_one(image, settings)
    if key is not None:
        cache.put(key, np.append(vector, np.float32(flags_to_mask(seg.flags))))
    return vector, seg.flags


def _cache_hits(paths, settings: FeatureSettings, source: ImageSource, cache: ArrayCache
                ) -> dict[int, tuple[np.ndarray, tuple[str, ...]]]:
    """``{index: (vector, flags)}`` of the images whose features are cached."""
    hits = {}
    for i, path in enumerate(paths):
        try:
            with open(path, "rb") as f:
                key = image_key(f.read(), settings, source, path)
        except OSError:  # the source reports unreadable files when extracting
            continue
        hit = cache.get(key)
        if hit is not None and hit.shape == (_n_features(settings) + 1,):
            hits[i] = (hit[:-1], mask_to_flags(int(hit[-1])))
    return hits


def _extract_chunk(paths, settings, source, cache):
    import cv2

    cv2.setNumThreads(1)
    results = [_extract_path(p, settings, source, cache) for p in paths]
    return np.stack([r[0] for r in results]), [r[1] for r in results]


def extract_many(
    paths: Sequence[str | os.PathLike],
    settings: FeatureSettings = FeatureSettings(),
    source: ImageSource | None = None,
    jobs: int = 1,
    cache: ArrayCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Features of every image file: ``(float32[n_images, n_features], flags per image)``.

    source: the image stage (:class:`~bmbench.data.images.ImageSource`, default: decode at
        native size, errors raise); its ``size`` is ignored (features resize by
        ``settings.image_size``). Must be picklable when ``jobs > 1``. Files its policy
        skips give NaN rows, flagged ``"unreadable"``.
    jobs: worker processes (joblib); 1 runs in this process. Results do not depend on it.
    cache: with an :class:`~bmbench.core.cache.ArrayCache`, vectors are keyed by the sha256 of
        the file bytes, the image stage's identity, the settings and :data:`FEATURE_VERSION`; a hit skips decoding and
        extraction and returns exactly the stored values.
    progress: called with the number of images done so far, after each chunk.

    Cache hits are read in this process; the rest is streamed to workers in chunks of at
    most :data:`CHUNK_SIZE` images (:func:`~bmbench.core.parallel.chunked`), so memory beyond the output array stays bounded by the chunks in
    flight and a fully cached run starts no worker.
    """
    source = (source or ImageSource()).at(None)
    paths = list(paths)
    n_features = len(feature_names(settings))
    out = np.empty((len(paths), n_features), np.float32)
    flags: list[tuple[str, ...]] = [()] * len(paths)
    # Hits are read here: sending them through worker processes costs more than reading them.
    hits = _cache_hits(paths, settings, source, cache) if cache is not None else {}
    for i, (vector, f) in hits.items():
        out[i], flags[i] = vector, f
    todo = [i for i in range(len(paths)) if i not in hits]
    chunks = chunked(todo, jobs, CHUNK_SIZE)
    work = ([paths[i] for i in chunk] for chunk in chunks)
    if jobs == 1 or len(chunks) <= 1:
        results = (_extract_chunk(chunk, settings, source, cache) for chunk in work)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, return_as="generator", pre_dispatch="2*n_jobs")(
            delayed(_extract_chunk)(chunk, settings, source, cache) for chunk in work)
    done = len(hits)
    if done and progress is not None:
        progress(done)
    for chunk, (vectors, chunk_flags) in zip(chunks, results):
        out[chunk] = vectors
        for i, f in zip(chunk, chunk_flags):
            flags[i] = f
        done += len(chunk)
        if progress is not None:
            progress(done)
    return out, flags

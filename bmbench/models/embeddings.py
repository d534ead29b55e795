"""Backbone embeddings: a frozen backbone's feature map pooled over space, cached per image.

An embedding is ``float32[d]`` (``d`` = the backbone's last channel count, e.g. 1024 for
DenseNet121). Each is cached as one :class:`~bmbench.core.cache.ArrayCache` entry under
``<cache>/embeddings/``, keyed by the image file's sha256, the backbone, the identity of its
weights (``imagenet``, the random-init seed, or the weights file's sha256), the image size,
``keep_aspect``, the pooling, the compute precision and :data:`EMBEDDING_VERSION`. So
reruns, head ablations (dropout, learning rate, epochs, classifier), other splits of the
same images, the ``hybrid`` family and ``bmbench features --backbone`` all share them:
only images without an entry are run through the backbone, and the backbone is not even
built when every entry exists. Entries of the wrong shape or with non-finite values are
recomputed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..core.cache import ArrayCache, key_for
from ..data.images import ImageSet
from ..deep.pipeline import full_batches, predict_rows
from .backbones import preprocess_for, weights_identity

log = logging.getLogger("bmbench.run")

#: Bump when embeddings of the same inputs would change (pooling, preprocessing).
EMBEDDING_VERSION = 1


@dataclass(frozen=True)
class EmbeddingSpec:
    """Which embeddings: ``backbone`` name; ``identity`` of its weights (see
    :func:`~.backbones.weights_identity`); ``pooling`` (``avg`` | ``max``); ``precision``
    (the Keras dtype policy the backbone runs in)."""

    backbone: str
    identity: str
    pooling: str = "avg"
    precision: str = "float32"
    #: the keras.applications name whose ``preprocess_input`` prepares inputs, for encoders
    #: whose ``backbone`` is not such a name (a file or a stored run; None: RGB [0, 255]).
    #: Not part of the keys: ``identity`` already names the file or run.
    preprocess: Optional[str] = None

    @classmethod
    def create(cls, backbone: str, weights: str, pooling: str = "avg", seed: int = 0,
               precision: str = "float32") -> "EmbeddingSpec":
        return cls(backbone, weights_identity(weights, seed), pooling, precision)

    def keys(self, images: ImageSet, rows: np.ndarray) -> list[str]:
        """One key per row: the file's bytes, the image stage's identity (size, padding,
        preprocessing), the backbone, its weights, pooling and precision."""
        return [key_for("bmbench.embedding", EMBEDDING_VERSION, images.digests[i], images.identity,
                        self.backbone, self.identity, self.pooling, self.precision)
                for i in rows]


def spec_for(backbone: str, weights: str, pooling: str, ctx, devices) -> EmbeddingSpec:
    """The spec of a run: its recipe seed and its devices' precision."""
    return EmbeddingSpec.create(backbone, weights, pooling, ctx.seed, devices.policy)


def spec_of(encoder, weights: str, pooling: str, seed: int, policy: str) -> EmbeddingSpec:
    """The spec of an :class:`~bmbench.models.encoders.Encoder` (a keras.applications one
    gives the same keys as :func:`spec_for`, so existing cache entries stay valid)."""
    if encoder.key_name == encoder.name and encoder.preprocess_name == encoder.name:  # keras.applications
        return EmbeddingSpec.create(encoder.name, weights, pooling, seed, policy)
    return EmbeddingSpec(encoder.key_name, encoder.identity(weights, seed), pooling,
                         encoder.precision or policy, encoder.preprocess_name)


def pooling_layer(pooling: str):
    from keras import layers

    return (layers.GlobalAveragePooling2D(name="pool") if pooling == "avg"
            else layers.GlobalMaxPooling2D(name="pool"))


def embed(images: ImageSet, spec: EmbeddingSpec, ctx, build_backbone: Callable,
          batch_size: int, label: str = "embeddings") -> np.ndarray:
    """``float32[n, d]`` embeddings of ``images`` (NaN rows where ``images.valid`` is False).

    ``build_backbone()`` returns the backbone ``keras.Model``; it is called only when some
    embedding is missing from the cache. Counts of cache hits and computed embeddings are
    added to ``ctx.notes.embedding_cache``.
    """
    cache = ArrayCache(ctx.cache_dir / "embeddings")
    rows = np.flatnonzero(images.valid)
    keys = spec.keys(images, rows)
    found = {k: v for k, v in cache.get_many(keys).items()
             if v.ndim == 1 and v.dtype == np.float32 and np.isfinite(v).all()}
    dims = {len(v) for v in found.values()}
    if len(dims) > 1:  # entries disagree: trust none of them
        found, dims = {}, set()
    missing = [(i, k) for i, k in zip(rows, keys) if k not in found]
    computed = None
    if missing:
        log.info("%s: computing %d of %d embeddings with %s (%s weights)", label, len(missing),
                 len(rows), spec.backbone, spec.identity.split(":")[0])
        computed = _compute(images, np.array([i for i, _ in missing]), spec, build_backbone,
                            batch_size)
        if dims and computed.shape[1] not in dims:
            found = {}
            missing = list(zip(rows, keys))
            computed = _compute(images, rows, spec, build_backbone, batch_size)
        cache.put_many({k: computed[j] for j, (_, k) in enumerate(missing)})
    d = computed.shape[1] if computed is not None else (dims.pop() if dims else 0)
    out = np.full((len(images), d), np.nan, np.float32)
    for i, k in zip(rows, keys):
        if k in found:
            out[i] = found[k]
    if computed is not None:
        out[[i for i, _ in missing]] = computed
    ctx.notes.count_embeddings(hits=len(rows) - len(missing), computed=len(missing))
    return out


def _compute(images: ImageSet, rows: np.ndarray, spec: EmbeddingSpec, build_backbone: Callable,
             batch_size: int) -> np.ndarray:
    net = build_backbone()
    if hasattr(net, "embed_rows"):  # a non-Keras encoder (ONNX) embeds decoded images itself
        return np.asarray(net.embed_rows(images, rows, batch_size), np.float32)
    from .backbones import BACKBONES

    name = spec.backbone if spec.backbone in BACKBONES else spec.preprocess
    extractor = _extractor(net, spec.pooling)
    return predict_rows(extractor, images, rows, batch_size, preprocess_for(name)).astype(np.float32)


#: The last extractor built, reused for the same backbone object and pooling, so the train,
#: validation and test embeddings of a run share one traced predict function instead of
#: tracing the backbone three times. One slot: it keeps at most one backbone alive.
_LAST_EXTRACTOR: list = []


def _extractor(backbone, pooling: str):
    import keras

    if _LAST_EXTRACTOR and _LAST_EXTRACTOR[0] is backbone and _LAST_EXTRACTOR[1] == pooling:
        return _LAST_EXTRACTOR[2]
    inputs = keras.Input(backbone.input_shape[1:])
    out = backbone(inputs, training=False)
    if len(backbone.output_shape) == 4:  # a feature map; a vector (an encoder file's own pooling) stays
        out = pooling_layer(pooling)(out)
    extractor = keras.Model(inputs, out)
    _LAST_EXTRACTOR[:] = [backbone, pooling, extractor]
    return extractor


@dataclass
class EmbeddingHead:
    """Prediction through cached embeddings for a model whose backbone stayed frozen:
    ``head`` maps ``float32[b, d]`` embeddings (``spec``) to probabilities with the same
    layers as the full model, so test images already embedded skip the backbone
    (``build_backbone()``: called only for images without an embedding)."""

    spec: EmbeddingSpec
    head: object
    build_backbone: Callable

    def predict(self, images: ImageSet, ctx, batch_size: int) -> np.ndarray:
        """``float64[n, n_classes]`` for the valid rows of ``images`` (others NaN)."""
        x = embed(images, self.spec, ctx, self.build_backbone, batch_size, "test embeddings")
        out = np.full((len(images), self.head.output_shape[-1]), np.nan)
        rows = np.flatnonzero(images.valid)
        if len(rows):
            padded = full_batches(x[rows], batch_size)
            out[rows] = self.head.predict(padded, batch_size=batch_size, verbose=0)[:len(rows)]
        return out


def embedding_batches(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, batch_size: int,
                      seed: int | None = None):
    """``tf.data`` over in-memory embeddings ``x`` ``(n, d)`` with labels ``y`` ``(n,)``:
    endless, reshuffled ``(x, y, w)`` batches when ``seed`` is given (training), else one
    ordered pass of ``(x, y)`` (validation)."""
    import tensorflow as tf

    if seed is None:
        return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))).batch(batch_size)
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32), w.astype(np.float32)))
    return (ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))

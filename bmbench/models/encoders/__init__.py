"""Encoders: what turns a cell image into a feature map or an embedding, one registry of kinds.

``model.backbone`` of the ``transfer`` and ``hybrid`` families names an encoder:

* a ``keras.applications`` name (``DenseNet121``): as before, with ``model.weights``
  (``imagenet``, ``none`` or a weights file of that architecture);
* a mapping ``{kind: <kind>, <its options>}`` for the other kinds: ``keras_file`` (a
  ``.keras`` model file, loaded in safe mode), ``onnx`` (an ONNX file run by ONNX Runtime,
  frozen; input size, layout, value range or mean/std and output declared and checked
  against the file), ``run`` (the network of a stored ``cnn`` or ``transfer`` run, minus
  its head: in-domain pretraining). With a file or run encoder ``model.weights: none``
  means "the same architecture, randomly initialised from the seed" (training from
  scratch); any other value means the encoder's own weights.

Each kind is one :class:`EncoderKind` in :data:`ENCODERS` (a plug-in adds one through the
entry-point group ``bmbench.encoders``). ``open(options)`` checks the file or run without
decoding a single image and returns an :class:`Encoder`: everything the families and the
embedding cache need (its cache identity, input size, preprocessing, a Keras network or a
batch embedder).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

from ...core.errors import RecipeError
from ...core.registry import Registry, did_you_mean, known_list

#: ``model.weights`` that asks a file or run encoder for a randomly initialised copy.
SCRATCH = "none"


@dataclass(frozen=True)
class EncoderKind:
    """One kind of encoder. Options: frozen dataclass of its recipe keys (besides ``kind``).
    open: ``options -> Encoder``; checks what it can before any image is decoded and raises
    a one-line :class:`~bmbench.core.errors.BmbenchError` naming the file and the fix."""

    name: str
    description: str
    Options: type
    open: Callable


ENCODERS: Registry[EncoderKind] = Registry(
    "encoder kind", "bmbench.encoders",
    ("bmbench.models.encoders.applications", "bmbench.models.encoders.keras_file",
     "bmbench.models.encoders.onnx_file", "bmbench.models.encoders.stored_run"),
    error=RecipeError, key="model.backbone.kind")


class Encoder:
    """What a family needs from an encoder (a kind subclasses it).

    name: a short label (summaries, embedding column prefix ``<name>_0000``).
    trainable: a Keras network that can be fine-tuned (False: frozen only, e.g. ONNX).
    preprocess_name: the ``keras.applications`` name whose ``preprocess_input`` turns RGB
    [0, 255] into the network's input (None: the network takes RGB [0, 255] itself).
    input_size: the side images must be decoded at (None: ``dataset.image_size``).
    key_name: the encoder's name in embedding-cache keys.
    """

    name: str = "encoder"
    key_name: str = "encoder"
    trainable: bool = True
    preprocess_name: Optional[str] = None
    input_size: Optional[int] = None
    precision: Optional[str] = None  # fixed compute precision (None: the run's Keras policy)

    def identity(self, weights: str, seed: int) -> str:
        """What identifies this encoder's weights in cache keys (a file's sha256 and every
        input setting; the seed where weights are random)."""
        raise NotImplementedError

    def check_size(self, size: int) -> None:
        """Raise a one-line error when images of side ``size`` cannot go in."""

    def size_for(self, size: int) -> int:
        return self.input_size or size

    def build(self, weights: str, size: int, seed: int):
        """A ``keras.Model`` from preprocessed images to a feature map ``(b, h, w, c)`` or a
        vector ``(b, d)``."""
        raise RecipeError(f"model.backbone: the {self.key_name} encoder is not a Keras network; "
                          "it can only embed images (family hybrid)")

    def embedder(self, weights: str, size: int, seed: int):
        """What :func:`bmbench.models.embeddings.embed` runs: by default the Keras network
        (pooled there); a frozen non-Keras encoder returns an object with
        ``embed_rows(images, rows, batch_size) -> float32[len(rows), d]``."""
        return self.build(weights, size, seed)


def file_stamp(*paths) -> tuple:
    """Sizes and modification times of ``paths`` (an opened encoder is reused while they
    stay the same)."""
    from pathlib import Path

    out = []
    for p in paths:
        try:
            st = Path(p).stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), None))
    return tuple(out)


class EncoderChoice:
    """A validated ``model.backbone``: the kind, its typed options, and whether it was given
    as a mapping (``explicit``) or as a bare ``keras.applications`` name."""

    def __init__(self, kind: str, options, explicit: bool):
        self.kind, self.options, self.explicit = kind, options, explicit

    def _key(self):
        return self.kind, self.options, self.explicit

    def __eq__(self, other) -> bool:
        return isinstance(other, EncoderChoice) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"EncoderChoice({self.to_plain()!r})"

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        """A short label: the keras.applications name, a file's stem or the run reference."""
        label = getattr(self.options, "label", None)
        return label() if callable(label) else self.kind

    def to_plain(self):
        """The recipe form: the bare name, or the mapping with every option."""
        if not self.explicit:
            return self.options.name
        return {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in asdict(self.options).items()}}

    def open(self) -> Encoder:
        """The :class:`Encoder` (opened once per process and choice; files are re-hashed
        when their size or modification time changes)."""
        return _open(self)


_OPENED: dict = {}


def _open(choice: EncoderChoice) -> Encoder:
    stamp_of = getattr(choice.options, "stamp", None)
    key = (choice._key(), stamp_of() if callable(stamp_of) else None)
    if key not in _OPENED:
        if len(_OPENED) > 8:
            _OPENED.clear()
        _OPENED[key] = ENCODERS.get(choice.kind).open(choice.options)
    return _OPENED[key]


def parse_encoder(value, ctx) -> EncoderChoice:
    """``model.backbone``: a ``keras.applications`` name, or ``{kind: ..., <its options>}``
    validated against the kind's own ``Options``; errors name the key."""
    from ...config.schema import build
    from ..backbones import BACKBONES

    if isinstance(value, EncoderChoice):
        return value
    if isinstance(value, str):
        if value in BACKBONES:
            return EncoderChoice("keras_applications", build(ENCODERS.get("keras_applications").Options,
                                                             {"name": value}, ctx), False)
        hint = ""
        if value.endswith((".onnx", ".keras")):
            kind = "onnx" if value.endswith(".onnx") else "keras_file"
            hint = f"; for a model file write backbone: {{kind: {kind}, path: {value}}}"
        raise ctx.error(f"unknown keras.applications backbone {value!r}"
                        f"{did_you_mean(value, BACKBONES.names())}{hint}; known: "
                        f"{known_list(BACKBONES.names())}, or a mapping {{kind: ...}} with kind one of "
                        f"{known_list(ENCODERS.names())}")
    if not isinstance(value, dict):
        raise ctx.error("expected a keras.applications name or a mapping {kind: ..., ...}")
    value = dict(value)
    if "kind" not in value:
        raise ctx.child("kind").error(f"required key is missing; one of {known_list(ENCODERS.names())}")
    kind = value.pop("kind")
    if not isinstance(kind, str) or kind not in ENCODERS:
        raise ctx.child("kind").error(f"unknown encoder kind {kind!r}{did_you_mean(kind, ENCODERS.names())}; "
                                      f"known: {known_list(ENCODERS.names())}")
    return EncoderChoice(kind, build(ENCODERS.get(kind).Options, value, ctx), True)


def encoder_names() -> list[str]:
    return ENCODERS.names()


def content_digest(path) -> str:
    """sha256 of a file's bytes (cached by path, size and modification time)."""
    from ...data.images import file_digest

    return file_digest(str(path))

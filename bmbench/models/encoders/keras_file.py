"""``keras_file`` encoders: a Keras 3 model file (``.keras``) whose output is a feature map
``(b, h, w, c)`` (pooled by the family) or a vector ``(b, d)``.

The file is checked before anything is built: its ``config.json`` is read from the zip and a
``Lambda`` layer or any class from outside Keras (custom objects) is refused with one line;
then it is loaded with ``keras.saving.load_model(safe_mode=True)``. Its input must be RGB
values in [0, 255] (put any normalisation inside the model, as
``keras.applications`` models with ``include_top=False`` and bmbench's own files do).
``model.weights: none`` gives the same architecture randomly initialised from the seed.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ...config.schema import option
from ...core.errors import BmbenchError
from . import ENCODERS, file_stamp, SCRATCH, Encoder, EncoderKind, content_digest


@dataclass(frozen=True)
class KerasFileOptions:
    path: str = option(doc="a .keras model file (RGB [0, 255] in; a feature map or a vector out)")

    def label(self) -> str:
        return Path(self.path).stem

    def stamp(self) -> tuple:
        return file_stamp(self.path)


def _refused(node, path: Path) -> None:
    """Raise when the saved config holds a Lambda layer or a class outside Keras."""
    if isinstance(node, dict):
        cls, module = node.get("class_name"), node.get("module")
        if cls == "Lambda":
            raise BmbenchError(f"model.backbone.path: {path} holds a Lambda layer (arbitrary code); "
                               "bmbench loads Keras files in safe mode only: rebuild the model from "
                               "standard layers and save it again")
        if isinstance(cls, str) and isinstance(module, str) and not (module == "keras" or module.startswith("keras.")):
            raise BmbenchError(f"model.backbone.path: {path} needs the custom object {module}.{cls}; "
                               "bmbench loads only standard Keras layers: rebuild the model from "
                               "standard layers and save it again")
        if node.get("registered_name") and "custom" in str(node.get("registered_name")).lower():
            raise BmbenchError(f"model.backbone.path: {path} needs the custom object "
                               f"{node['registered_name']}; bmbench loads only standard Keras layers")
        for value in node.values():
            _refused(value, path)
    elif isinstance(node, list):
        for value in node:
            _refused(value, path)


def load_keras_file(path: Path):
    """The model in ``path`` (checked as in the module doc), or a one-line error."""
    import keras

    if not path.is_file():
        raise BmbenchError(f"model.backbone.path: {path} does not exist; give a .keras model file")
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise BmbenchError(f"model.backbone.path: {path} is not a Keras 3 model file (.keras zip with "
                           "config.json); save the model with model.save('name.keras')") from None
    _refused(config, path)
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - any failure is one line naming the file
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BmbenchError(f"model.backbone.path: {path} cannot be loaded in safe mode ({reason})") from None


def describe_network(model, where: str) -> tuple[int | None, int]:
    """``(fixed input side or None, output rank)`` of an encoder network, or a one-line error."""
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise BmbenchError(f"{where}: the input is {model.input_shape}, not one RGB image "
                           "(batch, height, width, 3)")
    if shape[1] != shape[2]:
        raise BmbenchError(f"{where}: the input is {shape[1]}x{shape[2]} px; bmbench feeds square "
                           "images: export it with a square or variable input size")
    out = model.output_shape
    if isinstance(out, list) or len(out) not in (2, 4):
        raise BmbenchError(f"{where}: the output is {out}, neither a feature map (batch, h, w, c) "
                           "nor a vector (batch, d); cut the model before its classifier")
    return shape[1], len(out)


class KerasFileEncoder(Encoder):
    key_name = "keras_file"

    def __init__(self, options: KerasFileOptions):
        self.path = Path(options.path)
        self.name = options.label()
        model = load_keras_file(self.path)
        self.input_size, self.output_rank = describe_network(model, f"model.backbone.path: {self.path}")
        self.digest = content_digest(self.path)

    def identity(self, weights: str, seed: int) -> str:
        base = f"keras_file:{self.digest}"
        return f"{base}:none:seed={seed}" if weights == SCRATCH else base

    def check_size(self, size: int) -> None:
        if self.input_size is not None and size != self.input_size:
            raise BmbenchError(f"dataset.image_size: {size} px, but {self.path} takes "
                               f"{self.input_size} px images; set dataset.image_size to {self.input_size}")

    def build(self, weights: str, size: int, seed: int):
        model = load_keras_file(self.path)
        if content_digest(self.path) != self.digest:
            raise BmbenchError(f"model.backbone.path: {self.path} changed while the run used it; rerun")
        return scratch_copy(model, seed) if weights == SCRATCH else model


def scratch_copy(model, seed: int):
    """The same architecture, every weight freshly initialised from ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


ENCODERS.register("keras_file", EncoderKind(
    "keras_file", "a .keras model file (safe mode; fine-tuned by transfer, frozen by hybrid)",
    KerasFileOptions, KerasFileEncoder))

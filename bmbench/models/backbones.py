"""Pretrained ``keras.applications`` backbones: one table, one builder.

:data:`BACKBONES` maps a name to the ``keras.applications`` constructor, the submodule whose
``preprocess_input`` prepares its inputs (from RGB values in [0, 255]), and its minimum and
default (ImageNet training) input sizes. Everything is looked up by name lazily, so this
module imports no TensorFlow.

Weights (``model.weights``):

* ``imagenet``: Keras's own download and cache (``$KERAS_HOME/models/``, default
  ``~/.keras/models/``). When the download fails (no network), the error names the exact
  file to place in that folder.
* ``none``: the same architecture, randomly initialised (trained from scratch).
* a path to a weights file (``.weights.h5`` saved by Keras 3 ``save_weights``, or a legacy
  Keras ``.h5`` such as the files Keras downloads): for air-gapped machines. The file must
  exist and hold exactly this backbone's variables; otherwise the error names the file and
  the backbone.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import BmbenchError, RecipeError
from ..core.registry import Registry


@dataclass(frozen=True)
class Backbone:
    """constructor: attribute of ``keras.applications``; module: its submodule holding
    ``preprocess_input``; min_size / default_size: input sides in px."""

    constructor: str
    module: str
    min_size: int
    default_size: int
    #: glob of the no-top ImageNet weights file Keras downloads into its cache (None: unknown)
    weights_file: str | None = None

    @property
    def description(self) -> str:
        return f"keras.applications.{self.constructor}: input >= {self.min_size} px, ImageNet size {self.default_size} px"

    def build_fn(self):
        import keras
        return getattr(keras.applications, self.constructor)

    def preprocess_input(self):
        import keras
        return getattr(keras.applications, self.module).preprocess_input


def _table() -> dict[str, Backbone]:
    rows = {
        "DenseNet121": ("densenet", 32, 224), "DenseNet169": ("densenet", 32, 224),
        "DenseNet201": ("densenet", 32, 224),
        "ResNet50": ("resnet", 32, 224), "ResNet101": ("resnet", 32, 224),
        "ResNet152": ("resnet", 32, 224),
        "ResNet50V2": ("resnet_v2", 32, 224), "ResNet101V2": ("resnet_v2", 32, 224),
        "ResNet152V2": ("resnet_v2", 32, 224),
        "VGG16": ("vgg16", 32, 224), "VGG19": ("vgg19", 32, 224),
        "InceptionV3": ("inception_v3", 75, 299), "Xception": ("xception", 71, 299),
        "MobileNetV2": ("mobilenet_v2", 32, 224),
        "MobileNetV3Small": ("mobilenet_v3", 32, 224), "MobileNetV3Large": ("mobilenet_v3", 32, 224),
        "EfficientNetV2B0": ("efficientnet_v2", 32, 224), "EfficientNetV2B1": ("efficientnet_v2", 32, 240),
        "EfficientNetV2B2": ("efficientnet_v2", 32, 260), "EfficientNetV2B3": ("efficientnet_v2", 32, 300),
        "EfficientNetV2S": ("efficientnet_v2", 32, 384),
        "ConvNeXtTiny": ("convnext", 32, 224),
    }
    sizes = (224, 240, 260, 300, 380, 456, 528, 600)
    rows.update({f"EfficientNetB{i}": ("efficientnet", 32, s) for i, s in enumerate(sizes)})
    return {name: Backbone(name, *row, _weights_file(name)) for name, row in rows.items()}


_KERNELS = "_weights_tf_dim_ordering_tf_kernels"


def _weights_file(name: str) -> str:
    """The file name (a glob where the input size enters it) keras.applications 3.x gives
    the no-top ImageNet weights of backbone ``name``."""
    special = {"InceptionV3": f"inception_v3{_KERNELS}_notop.h5",
               "MobileNetV2": f"mobilenet_v2{_KERNELS}_1.0_*_no_top.h5",
               "MobileNetV3Small": "weights_mobilenet_v3_small_*no_top*.h5",
               "MobileNetV3Large": "weights_mobilenet_v3_large_*no_top*.h5",
               "ConvNeXtTiny": "convnext_tiny_notop.h5"}
    if name in special:
        return special[name]
    if name.startswith("EfficientNetV2"):
        return f"efficientnetv2-{name.removeprefix('EfficientNetV2').lower()}_notop.h5"
    if name.startswith("EfficientNet"):
        return f"{name.lower()}_notop.h5"
    return f"{name.lower()}{_KERNELS}_notop.h5"


#: Where keras.applications downloads ImageNet weights from (probed before a run starts).
WEIGHTS_HOST = ("storage.googleapis.com", 443)


def check_imagenet_available(name: str, timeout: float = 3.0) -> None:
    """Raise :class:`RecipeError` unless the ImageNet weights of backbone ``name`` are in
    Keras's cache or its download host answers: a run then fails in a second, not after
    decoding the data set and starting TensorFlow."""
    import socket

    spec = get_backbone(name)
    folder = keras_models_dir(import_keras=False)
    if spec.weights_file and folder.is_dir() and any(folder.glob(spec.weights_file)):
        return
    try:
        socket.create_connection(WEIGHTS_HOST, timeout=timeout).close()
        return
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
    wanted = f"{spec.weights_file} " if spec.weights_file else "its weights file "
    raise RecipeError(f"model.weights: imagenet weights of {name} are not in {folder} and {WEIGHTS_HOST[0]} "
                      f"cannot be reached ({reason}); place {wanted}in {folder}/, or set model.weights "
                      "to a local weights file or none")


#: name -> (constructor, preprocess_input module, min size, default size).
BACKBONES: Registry[Backbone] = Registry("backbone", "bmbench.backbones", error=RecipeError,
                                         key="model.backbone")
for _name, _backbone in _table().items():
    BACKBONES.register(_name, _backbone)



def get_backbone(name: str) -> Backbone:
    return BACKBONES.get(name)


def backbone_names() -> list[str]:
    return BACKBONES.names()


def preprocess_for(name: str | None):
    """The backbone's ``preprocess_input`` (float32 [0, 255] RGB batches in), or None."""
    return get_backbone(name).preprocess_input() if name else None


def check_size(name: str, size: int) -> None:
    spec = get_backbone(name)
    if size < spec.min_size:
        raise RecipeError(f"dataset.image_size: {size} px is below the minimum input size of "
                          f"{name} ({spec.min_size} px); set dataset.image_size to at least "
                          f"{spec.min_size} (its ImageNet size is {spec.default_size})")


def build_backbone(name: str, weights: str, size: int, seed: int = 0):
    """``keras.Model`` mapping preprocessed ``float32[b, size, size, 3]`` to the last
    feature map (no classifier top, no pooling), with ``weights`` as in the module doc.
    ``weights: none`` initialises from ``seed`` (reseeding Keras first), so the same seed
    always gives the same random backbone."""
    check_size(name, size)
    spec = get_backbone(name)
    build = spec.build_fn()
    shape = (size, size, 3)
    if weights == "none":
        import keras

        keras.utils.set_random_seed(seed)
        return build(include_top=False, weights=None, input_shape=shape)
    if weights == "imagenet":
        return _build_imagenet(name, build, shape)
    return _build_from_file(name, build, shape, Path(weights))


def keras_models_dir(import_keras: bool = True) -> Path:
    """Where Keras caches downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``
    (``import_keras=False``: the same rule without importing Keras, for quick checks)."""
    if not import_keras:
        return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"
    try:
        from keras.src.backend.config import keras_home
        return Path(keras_home()) / "models"
    except ImportError:
        return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _build_imagenet(name: str, build, shape):
    with _recording_downloads() as wanted:
        try:
            return build(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as exc:
            if not wanted:
                raise
            fname, origin = wanted[-1]
            reason = str(exc).split(" -- ")[-1].splitlines()[0][:120]
            raise BmbenchError(
                f"model.weights: cannot download the ImageNet weights of {name} ({reason}); on a "
                f"machine without internet place {fname} (from {origin}) in "
                f"{keras_models_dir()}/, or set model.weights to a local weights file or none"
            ) from None


@contextmanager
def _recording_downloads():
    """Record ``(file name, URL)`` of every file a ``keras.applications`` constructor asks
    Keras's downloader for, so an offline failure can name the exact file."""
    calls: list[tuple[str, str]] = []
    try:
        from keras.src.utils import file_utils
    except ImportError:  # another Keras layout: the error then names no file
        yield calls
        return
    original = file_utils.get_file

    def recording(fname=None, origin=None, *args, **kwargs):
        calls.append((fname or os.path.basename(str(origin)), str(origin)))
        return original(fname, origin, *args, **kwargs)

    file_utils.get_file = recording
    try:
        yield calls
    finally:
        file_utils.get_file = original


def _build_from_file(name: str, build, shape, path: Path):
    if not path.is_file():
        raise BmbenchError(f"model.weights: {path} does not exist; give a weights file saved from "
                           f"{name} (.weights.h5 or Keras .h5), or imagenet or none")
    if not path.name.endswith(".h5"):
        raise BmbenchError(f"model.weights: {path} is not a Keras weights file; use a "
                           f".weights.h5 (Keras save_weights) or .h5 file saved from {name}")
    model = build(include_top=False, weights=None, input_shape=shape)
    try:
        if path.name.endswith(".weights.h5"):
            _check_shapes(path, model, name)
        model.load_weights(path)
    except BmbenchError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        raise BmbenchError(f"model.weights: {path} does not match backbone {name} "
                           f"(without classifier top): {reason}") from None
    return model


def _check_shapes(path: Path, model, name: str) -> None:
    """Refuse a file whose variables (shapes, counted) differ from the model's: Keras may
    load a partly matching file with only warnings."""
    import h5py

    found: list[tuple[int, ...]] = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, obj: found.append(tuple(obj.shape))
                         if isinstance(obj, h5py.Dataset) else None)
    except OSError as exc:
        raise BmbenchError(f"model.weights: {path} is not a readable HDF5 weights file ({exc})") from None
    expected = sorted(tuple(v.shape) for v in model.weights)
    if sorted(found) != expected:
        raise BmbenchError(f"model.weights: {path} does not match backbone {name} (without "
                           f"classifier top): it holds {len(found)} arrays, {name} has "
                           f"{len(expected)} (or their shapes differ); save it from "
                           f"{name}(include_top=False)")


def weights_identity(weights: str, seed: int) -> str:
    """What identifies the backbone's initial weights in cache keys: ``imagenet``,
    ``none:seed=<seed>`` (random init depends on the seed) or ``file:<sha256 of the file>``."""
    if weights == "imagenet":
        return "imagenet"
    if weights == "none":
        return f"none:seed={seed}"
    from ..data.images import file_digest

    return f"file:{file_digest(weights)}"

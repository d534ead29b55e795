"""``onnx`` encoders: an ONNX file run by ONNX Runtime (``pip install 'bmbench[onnx]'``),
frozen: it embeds images for ``hybrid`` (a linear or kNN probe with ``features: []``).

The recipe declares how the file wants its input, and bmbench checks every declaration
against the file's own signature when the run starts, before any image is decoded:

* ``input_size``: the square side the images are decoded at (the file's input must be that
  size or variable; ``dataset.image_size`` must say the same);
* ``layout``: ``NHWC`` (batch, height, width, 3) or ``NCHW`` (batch, 3, height, width);
* ``range``: RGB values are scaled from [0, 255] to ``[lo, hi]`` (``[0, 1]`` for most
  PyTorch exports), then ``mean``/``std`` (per channel, in those units) are applied when
  given: ``(x - mean) / std``;
* ``output``: the name of the output holding one vector per image (may be left out when the
  file has one output); an output that is not ``(batch, d)`` is refused.

A dry run on two grey images checks that the output is a finite ``(2, d)`` array. The CUDA
execution provider is used when ONNX Runtime offers it, the CPU otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from ...config.schema import option
from ...core.errors import BmbenchError
from . import ENCODERS, file_stamp, SCRATCH, Encoder, EncoderKind, content_digest


@dataclass(frozen=True)
class OnnxOptions:
    path: str = option(doc="an .onnx file mapping one image batch to one vector per image")
    input_size: int = option(224, ge=8, le=4096, doc="square input side, px")
    layout: Literal["NHWC", "NCHW"] = option("NHWC", doc="axis order of the input")
    range: tuple[float, ...] = option((0.0, 255.0), doc="[lo, hi]: RGB [0, 255] is scaled to this")
    mean: Optional[tuple[float, ...]] = option(None, doc="per-channel mean subtracted after scaling (3 values)")
    std: Optional[tuple[float, ...]] = option(None, doc="per-channel std divided by after scaling (3 values)")
    output: Optional[str] = option(None, doc="output name (null: the file's only output)")

    def __post_init__(self):
        if len(self.range) != 2 or not self.range[0] < self.range[1]:
            raise ValueError("range: give two numbers [lo, hi] with lo < hi, e.g. [0, 1]")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std: give both (3 values each) or neither")
        if self.mean is not None and (len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0):
            raise ValueError("mean and std: 3 values each (R, G, B), std > 0")

    def label(self) -> str:
        return Path(self.path).stem

    def stamp(self) -> tuple:
        return file_stamp(self.path)


def providers() -> list[str]:
    """ONNX Runtime's CUDA provider when it has one, the CPU provider always."""
    import onnxruntime as ort

    found = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in found]


def _dim_ok(dim, want: int) -> bool:
    return not isinstance(dim, int) or dim == want  # a name or None: a variable axis


class OnnxEncoder(Encoder):
    key_name = "onnx"
    trainable = False
    precision = "float32"

    def __init__(self, o: OnnxOptions):
        self.options, self.path = o, Path(o.path)
        self.name = o.label()
        self.input_size = o.input_size
        try:
            import onnxruntime as ort
        except ImportError:
            raise BmbenchError("model.backbone: kind onnx needs ONNX Runtime; pip install 'bmbench[onnx]'") from None
        if not self.path.is_file():
            raise BmbenchError(f"model.backbone.path: {self.path} does not exist; give an .onnx file "
                               "(see docs: Benchmark a foundation model)")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers())
        except Exception as exc:  # noqa: BLE001 - any failure is one line naming the file
            reason = " ".join(str(exc).split())[:160]
            raise BmbenchError(f"model.backbone.path: {self.path} is not a loadable ONNX model ({reason})") from None
        self._check_signature()
        self.digest = content_digest(self.path)
        self.dims = self._dry_run()

    def _check_signature(self) -> None:
        o, where = self.options, f"model.backbone: {self.path}"
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BmbenchError(f"{where} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                               "export it with one image input")
        spec = inputs[0]
        self.input_name = spec.name
        if spec.type != "tensor(float)":
            raise BmbenchError(f"{where}: input {spec.name} is {spec.type}; bmbench feeds float32 "
                               "(export the model in float32)")
        shape = list(spec.shape)
        if len(shape) != 4:
            raise BmbenchError(f"{where}: input {spec.name} has shape {shape}, not an image batch of rank 4")
        s = o.input_size
        h, w, c = (shape[1], shape[2], shape[3]) if o.layout == "NHWC" else (shape[2], shape[3], shape[1])
        if not _dim_ok(c, 3):
            other = "NCHW" if o.layout == "NHWC" else "NHWC"
            raise BmbenchError(f"{where}: input {spec.name} has shape {shape}, not 3 channels in "
                               f"layout {o.layout}; set model.backbone.layout to {other}")
        if not (_dim_ok(h, s) and _dim_ok(w, s)):
            fixed = h if isinstance(h, int) else w
            raise BmbenchError(f"{where}: input {spec.name} has shape {shape}, not {s}x{s} px; "
                               f"set model.backbone.input_size to {fixed}")
        outputs = {x.name: x for x in self.session.get_outputs()}
        if o.output is None and len(outputs) != 1:
            raise BmbenchError(f"{where} has {len(outputs)} outputs ({', '.join(outputs)}); "
                               "name the embedding in model.backbone.output")
        name = o.output if o.output is not None else next(iter(outputs))
        if name not in outputs:
            raise BmbenchError(f"{where} has no output {name!r}; its outputs: {', '.join(outputs)}")
        out = list(outputs[name].shape)
        if len(out) != 2 or (isinstance(out[1], int) and out[1] < 1):
            raise BmbenchError(f"{where}: output {name} has shape {out}, not one vector per image "
                               "(batch, d); export the pooled embedding (e.g. timm num_classes=0)")
        self.output_name = name

    def _dry_run(self) -> int:
        x = np.full((2, self.input_size, self.input_size, 3), 128, np.uint8)
        try:
            y = self._run(x)
        except Exception as exc:  # noqa: BLE001
            reason = " ".join(str(exc).split())[:160]
            raise BmbenchError(f"model.backbone: {self.path} fails on a {self.input_size} px "
                               f"{self.options.layout} batch ({reason}); check input_size and layout") from None
        if y.ndim != 2 or y.shape[0] != 2 or not np.isfinite(y).all():
            raise BmbenchError(f"model.backbone: {self.path} output {self.output_name} gives shape "
                               f"{y.shape} (finite: {bool(np.isfinite(y).all())}) for 2 images; "
                               "export one finite vector per image")
        return int(y.shape[1])

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(b, s, s, 3)`` -> the file's float32 input."""
        o = self.options
        lo, hi = o.range
        x = images.astype(np.float32)
        if (lo, hi) != (0.0, 255.0):
            x *= np.float32((hi - lo) / 255.0)
            if lo:
                x += np.float32(lo)
        if o.mean is not None:
            x -= np.asarray(o.mean, np.float32)
            x /= np.asarray(o.std, np.float32)
        if o.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x

    def _run(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: self.prepare(images)})[0],
                          np.float32)

    def embed_rows(self, images, rows: np.ndarray, batch_size: int) -> np.ndarray:
        out = np.empty((len(rows), self.dims), np.float32)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            out[start:start + len(chunk)] = self._run(np.asarray(images.images[chunk]))
        return out

    def identity(self, weights: str, seed: int) -> str:
        o = self.options
        return (f"onnx:{self.digest}:size={o.input_size}:layout={o.layout}:range={list(o.range)}:"
                f"mean={list(o.mean) if o.mean else None}:std={list(o.std) if o.std else None}:"
                f"output={self.output_name}")

    def check_size(self, size: int) -> None:
        if size != self.input_size:  # dataset.image_size names the model input everywhere
            raise BmbenchError(f"dataset.image_size: {size} px, but the ONNX encoder {self.path.name} "
                               f"takes {self.input_size} px (model.backbone.input_size); set "
                               f"dataset.image_size to {self.input_size}")

    def embedder(self, weights: str, size: int, seed: int):
        if weights == SCRATCH:
            raise BmbenchError(f"model.weights: none: an ONNX encoder ({self.path}) is frozen and "
                               "cannot be re-initialised; leave model.weights out")
        if content_digest(self.path) != self.digest:
            raise BmbenchError(f"model.backbone.path: {self.path} changed while the run used it; rerun")
        return self


ENCODERS.register("onnx", EncoderKind(
    "onnx", "an ONNX file run by ONNX Runtime (frozen; declared input checked against the file)",
    OnnxOptions, OnnxEncoder))

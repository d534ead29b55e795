"""``keras.applications`` encoders: a name from :data:`bmbench.models.backbones.BACKBONES`,
with ``model.weights`` ``imagenet``, ``none`` or a weights file of that architecture."""

from __future__ import annotations

from dataclasses import dataclass

from ...config.schema import option
from . import ENCODERS, Encoder, EncoderKind


def _names():
    from ..backbones import backbone_names
    return backbone_names()


@dataclass(frozen=True)
class ApplicationOptions:
    name: str = option("DenseNet121", choices=_names, doc="keras.applications constructor")

    def label(self) -> str:
        return self.name


class ApplicationEncoder(Encoder):
    def __init__(self, name: str):
        self.name = self.key_name = self.preprocess_name = name

    def identity(self, weights: str, seed: int) -> str:
        from ..backbones import weights_identity

        return weights_identity(weights, seed)

    def check_size(self, size: int) -> None:
        from ..backbones import check_size

        check_size(self.name, size)

    def build(self, weights: str, size: int, seed: int):
        from ..backbones import build_backbone

        return build_backbone(self.name, weights, size, seed)


ENCODERS.register("keras_applications", EncoderKind(
    "keras_applications", "a keras.applications architecture (ImageNet weights, a weights file, or none)",
    ApplicationOptions, lambda o: ApplicationEncoder(o.name)))

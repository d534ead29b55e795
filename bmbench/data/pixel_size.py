"""Physical pixel size: bring images of every lab to one µm/px before features or tensors.

The same cell type measures 1.3-1.5x larger in Matek 2021 pixels than in PBC pixels, so
shape features in px, and model inputs resized per image, see different physical sizes per
lab. ``dataset.target_microns_per_pixel`` resamples every image by (its data set's µm/px) /
(target µm/px), and ``dataset.field_um`` then keeps one centred field of view in µm, so
that resizing to ``image_size`` afterwards keeps one scale for every image.
"""

from __future__ import annotations

from ..config.recipe import DatasetSpec
from ..config.registries import DATASET_KINDS
from .images import ImageSource


def microns_per_pixel(spec: DatasetSpec) -> float | None:
    """The pixel size of ``spec``'s images, µm/px: the recipe's, else the kind's documented
    one; None when unknown."""
    if spec.microns_per_pixel is not None:
        return spec.microns_per_pixel
    return getattr(DATASET_KINDS.get(spec.kind), "microns_per_pixel", None)


def physical_scale(spec: DatasetSpec, run: DatasetSpec) -> tuple[float, int | None]:
    """``(scale, field_px)`` that bring ``spec``'s images to the run's target pixel size and
    field of view (``run``: the run's ``dataset`` section); ``(1.0, None)`` when no target
    is set. Recipe validation has already made sure the pixel size is known."""
    target = run.target_microns_per_pixel
    if target is None:
        return 1.0, None
    field = round(run.field_um / target) if run.field_um else None
    return microns_per_pixel(spec) / target, field


def scaled(source: ImageSource, spec: DatasetSpec, run: DatasetSpec) -> ImageSource:
    """``source`` resampled for ``spec``'s images (see :func:`physical_scale`)."""
    scale, field = physical_scale(spec, run)
    return source.with_scale(scale, field) if (scale != 1 or field) else source

"""``bmbench plugins``: every plug-in point (registry), its entry-point group and entries."""

from __future__ import annotations

from ..config.registries import AUGMENTATIONS, DATASET_KINDS, FAMILIES, PREPROCESSING
from ..core.registry import Registry
from ..data.splits import IMAGE_GROUPINGS
from ..features.registry import FEATURE_FAMILIES
from ..models.backbones import BACKBONES
from ..models.classifiers import CLASSIFIERS
from ..models.encoders import ENCODERS

#: Every registry a plug-in can add to, in the order of the data flow.
REGISTRIES: tuple[Registry, ...] = (DATASET_KINDS, PREPROCESSING, IMAGE_GROUPINGS, FEATURE_FAMILIES,
                                    AUGMENTATIONS, BACKBONES, ENCODERS, CLASSIFIERS, FAMILIES)


def describe_plugins(fmt: str = "table") -> str:
    """Per registry: its entries with their origin (``bmbench`` or the plug-in's distribution)."""
    lines = []
    for reg in REGISTRIES:
        items = reg.describe()
        if fmt == "markdown":
            lines += [f"### {reg.what} (`{reg.group}`)", "", "| name | from | description |", "|---|---|---|"]
            lines += [f"| `{n}` | {reg.origin(n)} | {text} |" for n, text in items] or ["| (none) | | |"]
            lines.append("")
            continue
        lines.append(f"{reg.what} ({reg.group}): {len(items)}")
        width = max((len(n) for n, _ in items), default=0)
        for n, text in items:
            origin = reg.origin(n)
            lines.append(f"  {n.ljust(width)}  {text}" + ("" if origin == "bmbench" else f"  [{origin}]"))
        if not items:
            lines.append("  (none installed)")
    return "\n".join(lines).rstrip() + "\n"

"""``bmbench plugins``: every plug-in point (registry), its entry-point group and entries."""

from __future__ import annotations

from ..config.registries import AUGMENTATIONS, DATASET_KINDS, FAMILIES, PREPROCESSING
from ..core.registry import Registry
from ..data.splits import IMAGE_GROUPINGS
from ..features.registry import FEATURE_FAMILIES
from ..models.backbones import BACKBONES
from ..models.classifiers import CLASSIFIERS

#: Every registry a plug-in can add to, in the order of the data flow.
REGISTRIES: tuple[Registry, ...] = (DATASET_KINDS, PREPROCESSING, IMAGE_GROUPINGS, FEATURE_FAMILIES,
                                    AUGMENTATIONS, BACKBONES, CLASSIFIERS, FAMILIES)


def _describe(entry) -> str:
    """An entry's own ``title`` or ``description``; for a plain function, its docstring's
    first sentence (never the docstring of an instance's class)."""
    for attr in ("title", "description"):
        text = getattr(entry, attr, "")
        if isinstance(text, str) and text:
            return text.splitlines()[0]
    if callable(entry) and not isinstance(entry, type) and getattr(entry, "__doc__", None):
        return " ".join(entry.__doc__.split()).split(". ")[0].replace("``", "")
    return ""


def describe_plugins(fmt: str = "table") -> str:
    """Per registry: its entries with their origin (``bmbench`` or the plug-in's distribution)."""
    lines = []
    for reg in REGISTRIES:
        items = reg.items()
        if fmt == "markdown":
            lines += [f"### {reg.what} (`{reg.group}`)", "", "| name | from | description |", "|---|---|---|"]
            lines += [f"| `{n}` | {reg.origin(n)} | {_describe(e)} |" for n, e in items] or ["| (none) | | |"]
            lines.append("")
            continue
        lines.append(f"{reg.what} ({reg.group}): {len(items)}")
        width = max((len(n) for n, _ in items), default=0)
        for n, e in items:
            origin = reg.origin(n)
            lines.append(f"  {n.ljust(width)}  {_describe(e)}" + ("" if origin == "bmbench" else f"  [{origin}]"))
        if not items:
            lines.append("  (none installed)")
    return "\n".join(lines).rstrip() + "\n"

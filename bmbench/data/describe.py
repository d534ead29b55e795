"""Render the data set description table (for `bmbench datasets` and the README)."""

from __future__ import annotations

import dataclasses

from .registry import list_kinds


def describe_kinds(fmt: str = "table") -> str:
    kinds = list_kinds()
    if fmt == "markdown":
        rows = ["| kind | data set | layout | classes | split / groups | pixel size | citation |",
                "|---|---|---|---|---|---|---|"]
        rows += ["| " + " | ".join(_cell(c) for c in (
            f"`{k.name}`", f"{k.title}{_link(k.url)}", f"`{k.layout}`", _classes(k), _split(k),
            _pixel_size(k), k.citation)) + " |" for k in kinds]
        return "\n".join(rows) + "\n"
    out = []
    for k in kinds:
        out += [f"{k.name}: {k.title}", f"    layout:  {k.layout}", f"    images:  {k.images}",
                f"    classes: {_classes(k)}", f"    split:   {_split(k)}",
                f"    pixel:   {k.pixel_size}"]
        opts = [f.name for f in dataclasses.fields(k.options)]
        if opts:
            out.append(f"    options: {', '.join(opts)}")
        if k.notes:
            out.append(f"    note:    {k.notes}")
        out += [f"    cite:    {k.citation}" + (f" {k.url}" if k.url else ""), ""]
    return "\n".join(out)


def _cell(text: str) -> str:
    """Escape pipes so GitHub keeps the cell whole (also inside code spans)."""
    return text.replace("|", "\\|")


def _link(url: str) -> str:
    return f" ([source]({url}))" if url else ""


def _classes(kind) -> str:
    if not kind.classes:
        return "discovered from the data"
    return ", ".join(f"{code} ({name})" if code != name else code for code, name in kind.classes)


def _pixel_size(kind) -> str:
    return "not documented" if kind.microns_per_pixel is None else f"{kind.microns_per_pixel:g} µm/px"


def _split(kind) -> str:
    parts = ["predefined" if kind.predefined_split else "none predefined"]
    if kind.groups:
        parts.append(f"groups: {kind.groups}")
    return "; ".join(parts)

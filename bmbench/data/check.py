"""`bmbench datasets check`: per-class counts and unreadable files of a data set folder."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from ..core.progress import progress
from .imageio import read_rgb
from .load import load_dataset
from .table import DatasetTable
from ..core.errors import BmbenchError, DatasetError


@dataclass
class CheckReport:
    table: DatasetTable
    unreadable: dict[str, str] = field(default_factory=dict)
    decoded: bool = True

    def text(self) -> str:
        t = self.table
        counts = t.frame.groupby(["label", t.frame["split"].fillna("-")]).size()
        lines = [f"{t.kind} at {t.root}: {len(t)} images, {len(t.classes)} classes, "
                 f"fingerprint {t.fingerprint}"]
        if t.has_groups:
            lines.append(f"patient/group ids: {t.frame['group'].nunique()} groups")
        width = max(len(c) for c in t.classes)
        for c in t.classes:
            per = counts.loc[c] if c in counts.index.get_level_values(0) else {}
            parts = ", ".join(f"{s} {n}" for s, n in per.items() if s != "-")
            lines.append(f"  {c.ljust(width)}  {t.class_counts()[c]:>7}" + (f"   ({parts})" if parts else ""))
        if not self.decoded:
            lines.append("images not decoded (--no-decode)")
        elif self.unreadable:
            lines.append(f"{len(self.unreadable)} unreadable image(s):")
            lines += [f"  {msg}" for msg in self.unreadable.values()]
        else:
            lines.append("all images decode")
        return "\n".join(lines)


def check_dataset(root, kind: str, ids=None, options=(), decode: bool = True) -> CheckReport:
    from ..config.recipe import dataset_spec

    raw = {"kind": kind, "root": str(root)}
    if ids:
        raw["ids"] = ids
    for text in options:
        key, sep, value = text.partition("=")
        if not sep:
            raise BmbenchError(f"--option {text!r}: expected KEY=VALUE")
        raw[key.strip()] = yaml.safe_load(value) if value.strip() else None
    table = load_dataset(dataset_spec(raw, "--option"))
    report = CheckReport(table, decoded=decode)
    if decode:
        with progress(len(table), "decoding") as bar:
            for path in table.frame["path"]:
                try:
                    read_rgb(path)
                except DatasetError as exc:
                    report.unreadable[path] = str(exc)
                bar.update(1)
    return report

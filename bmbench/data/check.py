"""`bmbench datasets check`: per-class counts and unreadable files of a data set folder."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from ..config.recipe import SplitSpec

from ..core.progress import progress
from .imageio import read_rgb
from .load import load_dataset
from .splits import images_needed, make_split, resolve_strategy, split_settings
from .table import DatasetTable
from ..core.errors import BmbenchError, DatasetError


@dataclass
class CheckReport:
    table: DatasetTable
    unreadable: dict[str, str] = field(default_factory=dict)
    decoded: bool = True
    split_lines: list[str] = field(default_factory=list)
    split_fails: bool = False

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
        lines += self.split_lines
        if not self.decoded:
            lines.append("images not decoded (--no-decode)")
        elif self.unreadable:
            lines.append(f"{len(self.unreadable)} unreadable image(s):")
            lines += [f"  {msg}" for msg in self.unreadable.values()]
        else:
            lines.append("all images decode")
        return "\n".join(lines)


def key_values(texts, flag: str) -> dict:
    """``KEY=VALUE`` command-line texts as a mapping (values read as YAML)."""
    out = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep:
            raise BmbenchError(f"{flag} {text!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def check_split(report: CheckReport, spec: SplitSpec) -> None:
    """Try the split ``spec`` on the table and say which classes are too small for it,
    counting all of a class's images (what the user sees), not what is left after the test
    images are held out."""
    t = report.table
    strategy = resolve_strategy(spec, t)
    settings = ", ".join(f"{k}={v}" for k, v in split_settings(spec, strategy).items() if k != "strategy")
    head = f"split ({strategy}, {settings})"
    if spec.group_by != "none":
        report.split_lines.append(f"{head}: the near-duplicate groups are computed by `bmbench audit`")
        return
    need = images_needed(spec, strategy)
    small = [c for c, n in t.class_counts().items() if need and n < need]
    try:
        fold = make_split(t, spec).folds[0]
    except DatasetError as exc:
        report.split_fails = True
        report.split_lines.append(f"{head} fails: {exc}")
        if small:
            report.split_lines.append(f"  every class needs at least {need} images; too few in "
                                      + ", ".join(f"{c} ({t.class_counts()[c]})" for c in small))
        return
    report.split_lines.append(f"{head}: works" + (f" (every class needs at least {need} images)" if need else ""))
    if small:
        y = t.labels
        parts = {c: ", ".join(f"{int((y[getattr(fold, p)] == t.classes.index(c)).sum())} {p}"
                              for p in ("train", "val", "test")) for c in small}
        report.split_lines.append("  works by rounding luck for " + "; ".join(
            f"{c} ({t.class_counts()[c]}: {parts[c]})" for c in small)
            + ": another split seed or one image fewer can fail")


def check_dataset(root, kind: str, ids=None, options=(), decode: bool = True) -> CheckReport:
    from ..config.recipe import dataset_spec

    raw = {"kind": kind, "root": str(root)}
    if ids:
        raw["ids"] = ids
    raw.update(key_values(options, "--option"))
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

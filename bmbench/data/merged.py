"""``merged``: several data sets as one table, their classes matched through label maps.

Each entry of ``dataset.parts`` is a data set of its own kind (``kind``, ``root``, ``ids``,
``classes``, ``label_map`` and the kind's own keys), loaded and relabelled on its own; the
images of every part then form one table whose classes are the union of the mapped labels
(classes named alike after the maps are one class). Relative paths are taken from the
parts' common folder, so the table's fingerprint covers which part each image came from.
Patient groups keep their part (``<part index>:<group>``) so ids of two sets never merge.

A part's predefined split is dropped by default (the merged set is re-split like any other);
``part_splits: keep`` keeps every part's own train/test split instead and needs one in every
part. Image size, pixel size and preprocessing are the run's, given once under ``dataset``.

Every image carries its part's ``lab`` (a part key; default: the part's kind) in the table's
``lab`` column; parts cut from one lab's slides share a name. ``leave_out: LAB`` makes the
split itself: that lab's images are the test set and the other labs' the training images
(validation drawn from them), so a model is scored on a lab it never saw. A part with its own
split keeps its roles apart: its own test images are never trained on and, in the left-out
lab, only its own test images are tested (bloodcells4: TRAIN trains, TEST tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import numpy as np
import pandas as pd

from ..config.recipe import DatasetSpec, dataset_spec_at
from ..config.schema import option
from ..core.errors import DatasetError
from .labels import apply_label_map
from .load import load_dataset
from .registry import get_kind, register_kind

#: The keys a part takes besides its kind's own and ``lab``; the others belong to the whole run.
PART_KEYS = ("kind", "root", "ids", "classes", "label_map")
_LAB = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RUN_KEYS = tuple(f.name for f in dataclasses.fields(DatasetSpec) if f.name not in (*PART_KEYS, "options"))


class Parts:
    """Validated ``dataset.parts``: one :class:`DatasetSpec` per part, in the given order, and
    the lab each part was given (None: its kind names it)."""

    def __init__(self, specs, labs=None):
        self.specs = tuple(specs)
        self.given_labs = tuple(labs) if labs is not None else (None,) * len(self.specs)

    @property
    def labs(self) -> tuple[str, ...]:
        return tuple(lab or spec.kind for spec, lab in zip(self.specs, self.given_labs))

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __eq__(self, other) -> bool:
        return isinstance(other, Parts) and self.to_plain() == other.to_plain()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_plain(), sort_keys=True, default=str))

    def __repr__(self) -> str:
        return f"Parts({self.to_plain()!r})"

    def to_plain(self) -> list[dict]:
        """The recipe form: one flat mapping per part (unset keys left out)."""
        return [plain_part(s, lab) for s, lab in zip(self.specs, self.given_labs)]


def plain_part(spec: DatasetSpec, lab: str | None = None) -> dict:
    out: dict[str, Any] = {} if lab is None else {"lab": lab}
    for key in PART_KEYS:
        value = getattr(spec, key)
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    out.update(dataclasses.asdict(spec.options) if dataclasses.is_dataclass(spec.options) else {})
    return out


def parse_parts(value: Any, ctx) -> Parts:
    """``dataset.parts``: a list of at least two data sets; errors name ``dataset.parts[i].key``."""
    if isinstance(value, Parts):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) < 2:
        raise ctx.error("expected a list of at least 2 data sets, e.g. [{kind: pbc, root: DIR, "
                        "label_map: {...}}, {kind: raabin, root: DIR, label_map: {...}}]")
    specs, labs = [], []
    for i, raw in enumerate(value):
        here = ctx.child(i)
        if not isinstance(raw, Mapping):
            raise here.error("expected a mapping {kind: ..., root: ..., label_map: ...}")
        if raw.get("kind") == "merged":
            raise here.child("kind").error("a part cannot itself be merged; list its parts here")
        for key in raw:
            if key in _RUN_KEYS:
                raise here.child(key).error(
                    f"give it once under dataset, for the whole merged set; a part takes "
                    f"{', '.join(PART_KEYS)} and its kind's own keys")
        raw = dict(raw)
        labs.append(_lab(raw.pop("lab", None), here.child("lab")))
        specs.append(dataset_spec_at(raw, here))
    return Parts(specs, labs)


def _lab(value: Any, ctx) -> str | None:
    if value is not None and not (isinstance(value, str) and _LAB.fullmatch(value)):
        raise ctx.error("expected a short name of letters, digits, '_', '.' or '-' (e.g. BCCD); "
                        "parts cut from one lab's slides take the same name")
    return value


@dataclass(frozen=True)
class MergedOptions:
    parts: Any = option(parse=parse_parts, doc="the data sets to merge, each {kind, root, "
                        "label_map, ...}: classes named alike after the label maps are one class")
    part_splits: Literal["drop", "keep"] = option(
        "drop", doc="drop: re-split the merged images; keep: every part's own predefined "
                    "train/test split (each part must have one)")
    leave_out: Optional[str] = option(
        None, doc="a lab (a part's lab, default its kind): its images are the test set, the "
                  "other labs' the training images; a part's own test images never train")


@register_kind(
    name="merged", title="Several data sets merged through label maps", options=MergedOptions,
    citation="(cite every part)", url="",
    groups="each part's own, kept apart (<part index>:<group>)",
    layout="dataset.parts: [{kind, root, label_map}, ...], each in its own kind's layout",
    images="each part's own", pixel_size_note="each part's own",
    notes="Images of different labs differ in stain, scanner and pixel size: a model can learn "
          "the lab; check per-part scores with the predictions' relpaths.")
def load_merged(root, spec):
    if root is not None:
        raise DatasetError("dataset.root: kind 'merged' reads its folders from dataset.parts; "
                           "remove dataset.root")
    opts: MergedOptions = spec.options
    labs = opts.parts.labs
    _check_leave_out(opts, labs)
    tables = [_load_part(i, part) for i, part in enumerate(opts.parts)]
    roots = [t.root.resolve() for t in tables]
    common = Path(os.path.commonpath([str(r) for r in roots]))
    frames, seen = [], {}
    for i, (table, part_root, part) in enumerate(zip(tables, roots, opts.parts)):
        prefix = part_root.relative_to(common).as_posix()
        rel = table.frame["relpath"] if prefix == "." else prefix + "/" + table.frame["relpath"]
        for path in rel:
            if path in seen:
                raise DatasetError(f"dataset.parts[{i}]: {common / path} is also in "
                                   f"dataset.parts[{seen[path]}]; parts must not share images")
        seen.update(dict.fromkeys(rel, i))
        frames.append(pd.DataFrame({"relpath": rel.to_numpy(), "label": table.frame["label"].to_numpy(),
                                    "group": [None if g is None or g != g else f"{i}:{g}"
                                              for g in table.frame["group"]],
                                    "split": _split_column(i, table, part, opts),
                                    "lab": labs[i]}))
    rows = pd.concat(frames, ignore_index=True)
    if opts.leave_out is not None:
        rows = _leave_out(rows, opts.leave_out, labs)
    return common, rows


def _check_leave_out(opts: MergedOptions, labs: tuple[str, ...]) -> None:
    if opts.leave_out is not None and opts.leave_out not in labs:
        raise DatasetError(f"dataset.leave_out: '{opts.leave_out}' is not a lab of dataset.parts "
                           f"({', '.join(dict.fromkeys(labs))}); name one of them or give a part lab: NAME")
    if opts.leave_out is not None and opts.part_splits == "keep":
        raise DatasetError("dataset.leave_out makes the split itself (the left-out lab is the test set); "
                           "remove part_splits: keep")


def _leave_out(rows: pd.DataFrame, lab: str, labs: tuple[str, ...]) -> pd.DataFrame:
    """The left-out lab's images -> test, the others' -> train; a part's own split (in the
    ``split`` column here) decides which of its images may take that role."""
    out = (rows["lab"] == lab).to_numpy()
    own = rows["split"]
    free = own.isna().to_numpy()
    keep = np.where(out, free | (own == "test"), free | own.isin(["train", "val"]))
    role = np.where(out, "test", np.where(own == "val", "val", "train"))
    rows = rows.assign(split=role)[keep]
    if not (rows["split"] == "train").any():
        raise DatasetError(f"dataset.leave_out: {lab} is every part's lab ({', '.join(labs)}); "
                           "nothing is left to train on")
    # the same images can take other roles under another leave_out: the split enters the fingerprint
    rows.attrs["fingerprint_key"] = f"leave_out={lab}"
    return rows.reset_index(drop=True)


def _load_part(i: int, part: DatasetSpec):
    """Part ``i`` as a table in its kind's own labels, then its ``label_map`` and ``classes``
    applied to the rows (a part may bring a single class)."""
    try:
        table = load_dataset(dataclasses.replace(part, label_map=None, classes=None))
        frame = apply_label_map(table.frame, part.label_map, f"dataset.parts[{i}] at {table.root}")
    except DatasetError as exc:
        raise DatasetError(f"dataset.parts[{i}] ({part.kind}): {exc}") from None
    if part.classes:
        absent = [c for c in part.classes if c not in set(frame["label"])]
        if absent:
            raise DatasetError(f"dataset.parts[{i}].classes: {', '.join(absent)} not in the part's "
                               f"labels ({', '.join(sorted(set(frame['label'])))})")
        frame = frame[frame["label"].isin(part.classes)].reset_index(drop=True)
    return dataclasses.replace(table, frame=frame)


def _split_column(i: int, table, part: DatasetSpec, opts: MergedOptions) -> list:
    kind = get_kind(part.kind)
    if opts.leave_out is not None:  # a part's own split only limits which images take which role
        return table.frame["split"].tolist()
    if opts.part_splits == "keep":
        if not table.has_predefined_split:
            raise DatasetError(f"dataset.parts[{i}] ({part.kind}) has no predefined split, so "
                               "part_splits: keep cannot keep it; use part_splits: drop")
        return table.frame["split"].tolist()
    if kind.augmented:
        raise DatasetError(f"dataset.parts[{i}]: kind '{part.kind}' holds augmented near-duplicates, "
                           "and part_splits: drop re-splits them (a leaky split); use part_splits: keep")
    return [None] * len(table)

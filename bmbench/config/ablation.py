"""Ablation files and ``--vary`` options, expanded into validated variants.

An ablation is a base recipe, axes (recipe key paths, each with a list of values) and a
mode. ``one_at_a_time`` varies each axis alone around the base (the base itself is a
variant); ``grid`` runs every combination. ``repeats: N`` trains every variant ``N`` times
with training seeds ``base.seed + 0 .. N-1`` (the split, so the test set, never changes).
``train_fraction`` is the axis ``train.fraction``: the share of the training images used
(learning curves).

A variant is the base recipe plus ``key.path=value`` overrides, resolved and validated with
the recipe machinery (:meth:`bmbench.config.recipe.Recipe.with_overrides`). Every variant of every
repeat is validated before anything runs; the first invalid one stops the whole ablation
with an error naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import RecipeError
from .schema import Context
from .recipe import (MAX_DEPTH, PATH_KEYS, PATH_KEYWORDS, Recipe, TooDeep, absolute_path, load_recipe,
                     load_yaml_value, read_yaml)
from ..core.registry import did_you_mean

MODES = ("one_at_a_time", "grid")
TRAIN_FRACTION = "train.fraction"
#: The axis of named settings (``settings:`` in an ablation file): each value is a name
#: standing for several ``key.path: value`` changes made together.
SETTINGS = "settings"
DEFAULT_METRICS = ("macro_f1", "balanced_accuracy", "accuracy")
MAX_RUNS = 10_000
FILE_KEYS = ("name", "description", "base", "set", "settings", "vary", "train_fraction", "mode",
             "repeats", "metrics")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ABLATION_ID = _ID  # ablation ids name folders under results/ablations/


@dataclass(frozen=True)
class Axis:
    """One varied recipe key and its values (plain YAML data, in the given order)."""

    key: str
    values: tuple
    presets: dict = field(default_factory=dict, compare=False)  # settings axis: name -> changes

    @property
    def short(self) -> str:
        """The key without its section, for table headers (``model.features`` -> ``features``)."""
        return "train_fraction" if self.key == TRAIN_FRACTION else self.key.split(".")[-1]

    def overrides(self, value) -> list[str]:
        """The ``key.path=value`` texts that give this axis ``value``."""
        if self.key == SETTINGS:
            return [override_text(k, v) for k, v in self.presets[value].items()]
        return [override_text(self.key, value)]


@dataclass(frozen=True)
class Variant:
    """One point of the ablation.

    values: ``{axis key: value}`` for every axis (the base's value where not varied), as
        resolved by validation (e.g. ``[shape]``), JSON-ready.
    changed: the axis keys whose value differs from the base recipe's.
    recipes: the resolved recipe of each repeat (seed ``base.seed + repeat``).
    """

    index: int
    label: str
    values: dict
    changed: tuple[str, ...]
    is_base: bool
    recipes: tuple[Recipe, ...]

    def tags(self, ablation_id: str, repeat: int) -> dict:
        """What each run of this variant carries in ``run.json`` under ``tags``."""
        return {"ablation": ablation_id, "variant": self.label, "variant_index": self.index,
                "repeat": repeat, "values": self.values, "base": self.is_base}


@dataclass(frozen=True)
class Ablation:
    id: str
    base: Recipe
    axes: tuple[Axis, ...]
    mode: str = "one_at_a_time"
    repeats: int = 1
    metrics: tuple[str, ...] = DEFAULT_METRICS
    description: str = ""
    source: str = ""
    variants: tuple[Variant, ...] = field(default=())

    @property
    def n_runs(self) -> int:
        return sum(len(v.recipes) for v in self.variants)

    @property
    def reference(self) -> Variant:
        """The variant differences are measured against (see :func:`expand`)."""
        return next(v for v in self.variants if v.is_base)

    def plan(self) -> dict:
        """JSON-ready description (stored as ``results/ablations/<id>/ablation.json``)."""
        return {
            "id": self.id, "description": self.description, "source": self.source,
            "base": {"name": self.base.name, "source": self.base.source,
                     "fingerprint": self.base.fingerprint()},
            "mode": self.mode, "repeats": self.repeats, "metrics": list(self.metrics),
            "axes": [{"key": a.key, "values": list(a.values), **({"settings": a.presets} if a.presets else {})}
                     for a in self.axes],
            "variants": [{"index": v.index, "label": v.label, "values": v.values,
                          "changed": list(v.changed), "base": v.is_base,
                          "runs": [{"repeat": r, "seed": rec.seed, "fingerprint": rec.fingerprint()}
                                   for r, rec in enumerate(v.recipes)]}
                         for v in self.variants],
        }


# --- reading ------------------------------------------------------------------------------

def load_ablation(path: str | Path, overrides: tuple[str, ...] | list[str] = (),
                  mode: str | None = None, repeats: int | None = None,
                  metrics: tuple[str, ...] | None = None, ablation_id: str | None = None) -> Ablation:
    """Read an ablation file, expand and validate every variant.

    ``overrides`` (``key.path=value``) change the base recipe (e.g. a smaller data set);
    ``mode``, ``repeats``, ``metrics`` and ``ablation_id`` replace the file's values when given.
    """
    path = Path(path)
    raw = read_yaml(path)
    where = str(path)
    unknown = [k for k in raw if k not in FILE_KEYS]
    if unknown:
        k = unknown[0]
        raise RecipeError(f"{where}: {k}: unknown key{did_you_mean(k, FILE_KEYS)}; valid keys in "
                          f"an ablation file: {', '.join(FILE_KEYS)}")
    if "base" not in raw or not isinstance(raw["base"], str):
        raise RecipeError(f"{where}: base: required; the path of the base recipe (relative to "
                          "this file)")
    base_path = Path(absolute_path(raw["base"], path.parent, Context(where, "base")))
    sets = _file_sets(raw.get("set"), where, path.parent)
    base = load_recipe(base_path, [*sets, *overrides])
    vary = raw.get("vary") or {}
    if not isinstance(vary, dict):
        raise RecipeError(f"{where}: vary: expected a mapping of recipe key paths to lists of values")
    axes = [_axis(key, values, f"{where}: vary: {key}", path.parent) for key, values in vary.items()]
    if "settings" in raw:
        axes.insert(0, _settings_axis(raw["settings"], f"{where}: settings", path.parent,
                                      {a.key for a in axes}))
    if "train_fraction" in raw:
        if any(a.key == TRAIN_FRACTION for a in axes):
            raise RecipeError(f"{where}: give the training fraction either as train_fraction or "
                              f"under vary as {TRAIN_FRACTION}, not both")
        axes.append(_axis(TRAIN_FRACTION, raw["train_fraction"], f"{where}: train_fraction", None))
    if not axes:
        raise RecipeError(f"{where}: nothing to vary; add 'vary: {{key.path: [value, ...]}}', "
                          "'settings: {name: {key.path: value, ...}}' or 'train_fraction: [...]'")
    name = ablation_id or raw.get("name", path.stem)
    if not isinstance(name, str) or not _ID.fullmatch(name):
        raise RecipeError(f"{where}: name: {name!r} is not a valid id (letters, digits, _ . -)")
    return expand(
        name, base, axes,
        mode=mode or _choice(raw.get("mode", "one_at_a_time"), MODES, f"{where}: mode"),
        repeats=repeats if repeats is not None else _repeats(raw.get("repeats", _base_repeats(base)),
                                                             f"{where}: repeats"),
        metrics=metrics or _metrics(raw.get("metrics", list(DEFAULT_METRICS)), f"{where}: metrics"),
        description=str(raw.get("description") or ""), source=where)


def ablation_from_options(recipe_path: str | Path, vary: list[str] | tuple[str, ...],
                          overrides: tuple[str, ...] | list[str] = (), mode: str | None = None,
                          repeats: int | None = None, metrics: tuple[str, ...] | None = None,
                          ablation_id: str | None = None) -> Ablation:
    """The short form: ``bmbench ablate RECIPE --vary key.path=v1,v2 ...``.

    Values are separated by commas outside brackets and quotes, each parsed as YAML:
    ``model.features=[shape],[shape,color]`` gives the two values ``[shape]`` and
    ``[shape, color]``. The default id is ``<recipe name>-<hash of the options>``, so the same
    command resumes the same ablation.
    """
    base = load_recipe(recipe_path, overrides)
    axes = []
    for text in vary:
        key, sep, values = text.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise RecipeError(f"--vary {text!r}: expected KEY.PATH=VALUE1,VALUE2,... e.g. "
                              "--vary model.segmentation=otsu,none")
        axes.append(_axis(key.strip(), parse_values(values, f"--vary {key.strip()}"),
                          f"--vary {key.strip()}", None))
    if not axes:
        raise RecipeError(f"{recipe_path}: is a recipe; say what to vary with --vary "
                          "KEY.PATH=V1,V2 (or give an ablation file)")
    mode = mode or "one_at_a_time"
    repeats = repeats or _base_repeats(base)
    if ablation_id is None:
        token = json.dumps([base.fingerprint(), [[a.key, list(a.values)] for a in axes], mode, repeats],
                           sort_keys=True, default=str)
        ablation_id = f"{base.name}-{hashlib.sha256(token.encode()).hexdigest()[:8]}"
    elif not _ID.fullmatch(ablation_id):
        raise RecipeError(f"--id {ablation_id!r}: use letters, digits, _ . - only")
    return expand(ablation_id, base, axes, mode, repeats, metrics or DEFAULT_METRICS,
                  source=f"{recipe_path} --vary")


def parse_values(text: str, where: str) -> list:
    """Split ``text`` at commas outside brackets, braces and quotes; parse each piece as YAML."""
    pieces, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    if depth != 0 or quote:
        raise RecipeError(f"{where}: unbalanced brackets or quotes in {text!r}")
    values = []
    for piece in pieces:
        if not piece.strip():
            raise RecipeError(f"{where}: empty value in {text!r}")
        try:
            values.append(load_yaml_value(piece))
        except TooDeep:
            raise RecipeError(f"{where}: a value is nested deeper than {MAX_DEPTH} levels; flatten it") from None
        except ValueError as exc:
            raise RecipeError(f"{where}: invalid value ({exc})") from None
        except yaml.YAMLError:
            raise RecipeError(f"{where}: {piece.strip()[:60]!r} is not a valid YAML value") from None
    return values


def _file_sets(value: Any, where: str, folder: Path) -> list[str]:
    """``set:`` of an ablation file (a mapping ``key.path: value``) as override texts."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: set: expected a mapping of recipe key paths to values")
    return [override_text(k, _relative_path(k, v, folder)) for k, v in value.items()]


def override_text(key: str, value: Any) -> str:
    """``key=value`` with the value as JSON (a YAML subset), for :func:`apply_override`."""
    return f"{key}={json.dumps(value, default=str)}"


def _relative_path(key: str, value: Any, folder: Path | None) -> Any:
    """Path keys in an ablation file are relative to the file, like in recipes."""
    parts = tuple(str(key).split("."))
    if (folder is not None and parts in PATH_KEYS and isinstance(value, str)
            and value not in PATH_KEYWORDS.get(parts, ())):
        return absolute_path(value, folder, Context("ablation set", str(key)))
    return value


def _axis(key: Any, values: Any, where: str, folder: Path | None) -> Axis:
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*", key):
        raise RecipeError(f"{where}: {key!r} is not a recipe key path like model.features "
                          "(list entries by index: evaluate.0.adapt.n_per_class)")
    if key in ("seed", "repeats", "name", "description"):
        hint = "use repeats: N for several seeds" if key in ("seed", "repeats") else "it does not change results"
        raise RecipeError(f"{where}: '{key}' cannot be varied ({hint})")
    if not isinstance(values, list) or not values:
        raise RecipeError(f"{where}: expected a non-empty list of values, got {values!r}")
    values = [_relative_path(key, v, folder) for v in values]
    seen = set()
    for v in values:
        token = json.dumps(v, sort_keys=True, default=str)
        if token in seen:
            raise RecipeError(f"{where}: value {v!r} is listed twice")
        seen.add(token)
    return Axis(key, tuple(values))


def _settings_axis(value: Any, where: str, folder: Path, other_keys: set[str]) -> Axis:
    """``settings: {name: {key.path: value, ...}, ...}``: named sets of changes, one axis."""
    if not isinstance(value, dict) or not value:
        raise RecipeError(f"{where}: expected a mapping of names to mappings of recipe key paths "
                          "to values, e.g. {scratch: {model.weights: none}}")
    presets = {}
    for name, changes in value.items():
        if not isinstance(name, str) or not _ID.fullmatch(name):
            raise RecipeError(f"{where}: {name!r} is not a valid name (letters, digits, _ . -)")
        if not isinstance(changes, dict):
            raise RecipeError(f"{where}: {name}: expected a mapping of recipe key paths to values "
                              "(use {} for the base recipe as it is)")
        for key in changes:
            _axis(key, [changes[key]], f"{where}: {name}: {key}", folder)
            if key in other_keys:
                raise RecipeError(f"{where}: {name}: {key} is also an axis under vary; vary a key "
                                  "in one place only")
        presets[name] = {k: _relative_path(k, v, folder) for k, v in changes.items()}
    return Axis(SETTINGS, tuple(presets), presets)


def _base_repeats(base: Recipe) -> int:
    """Repeats when the ablation does not say: the base recipe's own ``repeats``."""
    return min(100, int(getattr(base, "repeats", 1) or 1))


def _choice(value: Any, choices, where: str) -> str:
    if value not in choices:
        raise RecipeError(f"{where}: {value!r}{did_you_mean(str(value), choices)}; choose "
                          f"{' or '.join(choices)}")
    return value


def _repeats(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise RecipeError(f"{where}: expected an integer from 1 to 100, got {value!r}")
    return value


def _metrics(value: Any, where: str) -> tuple[str, ...]:
    from ..metrics.scores import HEADLINE

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RecipeError(f"{where}: expected a list of metric names")
    for m in value:
        if m not in HEADLINE:
            raise RecipeError(f"{where}: unknown metric {m!r}{did_you_mean(str(m), HEADLINE)}; "
                              f"choose from {', '.join(HEADLINE)}")
    return tuple(dict.fromkeys(value))


def plan_ablation(source: str | Path, vary=(), overrides=(), mode: str | None = None,
                  repeats: int | None = None, metrics: tuple[str, ...] | None = None,
                  ablation_id: str | None = None) -> Ablation:
    """The ablation of ``source``: an ablation file (a mapping with ``base:``), or a recipe
    whose axes are ``vary`` (``key.path=v1,v2`` texts), every variant validated."""
    from .recipe import read_yaml

    is_ablation = "base" in read_yaml(Path(source))
    if is_ablation and vary:
        raise RecipeError(f"{source}: is an ablation file; put the axes under its 'vary:' "
                          "(--vary is for a recipe)")
    if is_ablation:
        return load_ablation(source, tuple(overrides), mode, repeats, metrics, ablation_id)
    return ablation_from_options(source, tuple(vary), tuple(overrides), mode, repeats, metrics, ablation_id)


def check_metrics(metrics, where: str = "--metric") -> tuple[str, ...] | None:
    """Validated metric names (None when none given)."""
    return _metrics(list(metrics), where) if metrics else None


# --- expansion ----------------------------------------------------------------------------

def expand(ablation_id: str, base: Recipe, axes: list[Axis] | tuple[Axis, ...],
           mode: str = "one_at_a_time", repeats: int = 1, metrics=DEFAULT_METRICS,
           description: str = "", source: str = "") -> Ablation:
    """All variants of ``base`` along ``axes``, each validated for every repeat.

    ``one_at_a_time``: the base, then each axis's values in order, one axis changed at a
    time; a value equal to the base's (same resolved recipe) is the base itself and is not
    run twice. ``grid``: every combination, in row-major order of the axes. The reference
    ("base") variant is the one identical to the base recipe; in a grid that does not
    contain it, the first combination.
    """
    _choice(mode, MODES, f"{source}: mode")
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise RecipeError(f"{source}: an axis is listed twice ({', '.join(keys)})")
    base_fp = base.fingerprint()
    if mode == "grid":
        points = [dict(zip(keys, combo)) for combo in itertools.product(*(a.values for a in axes))]
    else:
        points = [{}] + [{a.key: v} for a in axes for v in a.values]
    total = len(points) * repeats
    if total > MAX_RUNS:
        raise RecipeError(f"{source}: {total} runs planned, more than {MAX_RUNS}; use fewer values, "
                          "one_at_a_time mode or fewer repeats")
    variants: list[Variant] = []
    seen: dict[str, str] = {}
    by_key = {a.key: a for a in axes}
    resolved_points = []
    for point in points:
        label = _label(point, axes)
        recipe = _resolve(base, [t for k, v in point.items() for t in by_key[k].overrides(v)],
                          ablation_id, label)
        resolved_points.append((point, label, recipe))
    # the base's value on each axis: its own value, or for named settings the name of the
    # setting that leaves the base recipe as it is (else "base")
    base_values = {a.key: _value(base, a.key) for a in axes if a.key != SETTINGS}
    if SETTINGS in by_key:
        base_values[SETTINGS] = next(
            (name for name in by_key[SETTINGS].values
             if _resolve(base, by_key[SETTINGS].overrides(name), ablation_id, name).fingerprint() == base_fp),
            "base")
    for point, label, recipe in resolved_points:
        fp = recipe.fingerprint()
        if mode == "one_at_a_time" and point and fp == base_fp:
            continue  # the base's own value: the base variant covers it
        if fp in seen:
            raise RecipeError(f"ablation {ablation_id}: variant '{label}' resolves to the same recipe "
                              f"as variant '{seen[fp]}'; remove one of the values")
        seen[fp] = label
        values = {a.key: point.get(a.key, base_values[a.key]) if a.key == SETTINGS
                  else _value(recipe, a.key) for a in axes}
        changed = tuple(k for k in keys if values[k] != base_values[k])
        recipes = tuple(_with_seed(recipe, base.seed + r, ablation_id, label) for r in range(repeats))
        variants.append(Variant(len(variants), label, values, changed, fp == base_fp, recipes))
    if not any(v.is_base for v in variants):
        variants[0] = dataclasses.replace(variants[0], is_base=True)
    return Ablation(ablation_id, base, tuple(axes), mode, repeats, tuple(metrics), description,
                    source, tuple(variants))


def _resolve(base: Recipe, overrides: list[str], ablation_id: str, label: str) -> Recipe:
    try:
        return base.with_overrides(overrides)
    except RecipeError as exc:
        raise RecipeError(f"ablation {ablation_id}, variant '{label}': {exc}") from None


def _with_seed(recipe: Recipe, seed: int, ablation_id: str, label: str) -> Recipe:
    if seed == recipe.seed:
        return recipe
    return _resolve(recipe, [f"seed={seed}"], ablation_id, f"{label}, seed {seed}")


def _label(point: dict, axes) -> str:
    if not point:
        return "base"
    short = {a.key: a.short for a in axes}
    return ", ".join(str(v) if k == SETTINGS else f"{short[k]}={format_value(v)}"
                     for k, v in point.items())


def format_value(value: Any) -> str:
    """Compact text of a value: lists as ``[a, b]``, None as ``null``, floats as given."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _value(recipe: Recipe, key: str) -> Any:
    """The recipe's value at ``key``, JSON-ready: as the resolved recipe gives it, or for a
    key it leaves out while inert (``evaluate.0.adapt`` with n_per_class 0) the default."""
    found = _lookup(recipe.to_dict(), key, _MISSING)
    if found is _MISSING:
        found = _lookup(dataclasses.asdict(recipe), key)
    return _jsonable(found)


_MISSING = object()


def _lookup(data: dict, key: str, missing: Any = None) -> Any:
    node: Any = data
    for part in key.split("."):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return missing
    return node


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: list(o) if isinstance(o, (tuple, set)) else str(o)))

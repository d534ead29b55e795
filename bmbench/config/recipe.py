"""Recipes: YAML files validated once into frozen dataclasses.

Loading order: the file (``yaml.safe_load``, aliases refused) -> ``extends`` bases merged
under it -> ``${ENV}`` expansion -> relative paths resolved against the file's folder ->
``--set key.path=value`` overrides (paths relative to the working directory) -> validation.
Every error names the file and the key path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from ..core.errors import RecipeError
from ..core.registry import did_you_mean, known_list
from .registries import AUGMENTATIONS, DATASET_KINDS, FAMILIES, PREPROCESSING
from .schema import MAX_SEED, Context, build, option
from .space import choice, floats

PATH_KEYS = (("dataset", "root"), ("dataset", "ids"), ("dataset", "preprocess_reference"), ("model", "weights"))
#: Values of path keys that are keywords, not file names (left as they are).
#: ``model.weights`` values that are keywords, not a weights file path.
WEIGHT_KEYWORDS = ("imagenet", "none")
PATH_KEYWORDS = {("model", "weights"): WEIGHT_KEYWORDS}
#: Pixel-size keys of a data set; the last two belong to the run and are given under ``dataset``.
PHYSICAL_KEYS = ("microns_per_pixel", "target_microns_per_pixel", "field_um")
#: Keys left out of a recipe's plain form while unset, so older recipes keep their fingerprints.
OPTIONAL_KEYS = (*PHYSICAL_KEYS, "preprocess_reference", "positive_class", "dense")
#: ``model`` keys left out of a recipe's plain form at these values (their defaults), so
#: recipes from before the key existed keep their fingerprints.
INERT_MODEL_DEFAULTS = {"norm": "batch", "norm_groups": 8}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: In path values also ``$NAME`` (no braces); never a shell: nothing else is interpreted.
_PATH_ENV = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
#: Recipe files (and each ``--set`` value) larger than this are refused unread: recipes are a
#: few kB; anything near this is a mistake (a data file given as the recipe, an endless device).
MAX_RECIPE_BYTES = 1 << 20
#: Values nested deeper than this (counting the recipe's own mapping as level 1) are refused
#: while parsing: the deepest real recipe keys are about 7 levels down.
MAX_DEPTH = 32
#: At most this many files in one ``extends`` chain.
MAX_EXTENDS = 16


@dataclass(frozen=True)
class DatasetSpec:
    kind: str = option(doc="data set kind (see `bmbench datasets`)")
    root: Optional[str] = option(None, doc="data set folder (or CSV for kind manifest)")
    ids: Optional[str] = option(None, doc="images ID file for kind matek_bm4 (default images_IDs.txt)")
    classes: Optional[tuple[str, ...]] = option(None, doc="keep only these classes, in this order")
    label_map: Optional[dict[str, Optional[str]]] = option(
        None, doc="rename/merge classes ({old: new}), drop them ({old: null}); '*' maps the rest")
    positive_class: Optional[str] = option(
        None, doc="also score this class against the rest (after label_map): sensitivity, "
                  "specificity, precision, NPV, F1 and ROC-AUC of it, in metrics.json 'binary'")
    image_size: int = option(64, ge=8, le=2048, doc="side of the square model input, px")
    keep_aspect: bool = option(False, doc="resize keeping the aspect ratio and pad with background")
    on_bad_image: Literal["error", "skip"] = option("error", doc="unreadable images: stop or skip")
    max_pixels: int = option(50_000_000, ge=1, le=1 << 40, doc="refuse images with more pixels (bomb guard)")
    microns_per_pixel: Optional[float] = option(
        None, gt=0.0, le=100.0, doc="pixel size of these images, µm/px (default: the kind's "
                                    "documented one; `bmbench datasets` lists them)")
    target_microns_per_pixel: Optional[float] = option(
        None, gt=0.0, le=100.0, doc="resample every image (training, test, evaluate sets, predict) "
                                    "to this pixel size, µm/px, before features or tensors")
    field_um: Optional[float] = option(
        None, gt=0.0, le=10_000.0, doc="after resampling, keep the centred square of this side, µm "
                                       "(padded with background where smaller): one field of view "
                                       "for every lab, so resized model inputs keep the scale")
    preprocess: tuple[Any, ...] = option(
        (), doc="image preprocessing steps, in order: a name or {name: {options}} each "
                "(`bmbench plugins` lists them); fitted on the training images")
    preprocess_reference: Optional[str] = option(
        None, doc="folder of images the preprocessing steps fit their reference on instead of "
                  "the training images (e.g. unlabelled cells of the lab you will predict)")
    options: Any = option(None, doc="kind-specific options, given flat beside the keys above")


@dataclass(frozen=True)
class StepSpec:
    """One validated ``dataset.preprocess`` entry: the step's name and its typed options."""

    name: str
    options: Any


@dataclass(frozen=True)
class SplitSpec:
    strategy: Literal["auto", "stratified", "grouped", "predefined"] = option(
        "auto", doc="auto: predefined if the data set has one, else grouped if it has "
                    "patient ids, else stratified")
    test: float = option(0.2, gt=0.0, lt=1.0, doc="test fraction (ignored for predefined/folds)")
    val: float = option(0.1, ge=0.0, lt=1.0, doc="validation fraction of all images")
    seed: int = option(0, ge=0, le=MAX_SEED - 1, doc="split seed; independent of the training seed "
                       "(the validation draw uses seed + 1)")
    folds: Optional[int] = option(None, ge=2, le=50, doc="k-fold cross-validation instead of one test set")
    on_leak: Literal["warn", "error"] = option(
        "warn", doc="test images with a byte-identical copy in training: warn, or stop the run")
    allow_leaky: bool = option(
        False, doc="allow re-splitting a data set known to hold augmented near-duplicates")
    group_by: Literal["none", "near_duplicates"] = option(
        "none", doc="near_duplicates: images joined by exact or near copies (see `bmbench audit`) "
                    "form groups of a grouped split, so copies never straddle train/test")


@dataclass(frozen=True)
class ModelSpec:
    family: str = option(doc="model family (baseline, classical, cnn, transfer...)")
    options: Any = option(None, doc="family-specific options, given flat beside 'family'")


def _augmentations() -> list[str]:
    return [*AUGMENTATIONS.names(), "none"]


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = option(30, ge=1, le=10_000, doc="maximum epochs / boosting rounds scale")
    batch_size: int = option(32, ge=1, le=65_536, doc="images per batch", space=choice(16, 32, 64))
    learning_rate: float = option(1e-3, gt=0.0, le=10.0, doc="initial learning rate",
                                  space=floats(1e-4, 1e-2, log=True))
    patience: int = option(5, ge=1, le=100_000, doc="early-stopping patience on the validation set")
    class_weight: Literal["balanced", "none"] = option("balanced", doc="weight classes by 1/frequency")
    jobs: int = option(1, ge=-1, le=256, doc="parallel workers for image work: feature-extraction processes, decoding threads (-1: all cores)")
    augment: tuple[str, ...] = option(
        ("flip", "rotate90"), choices=_augmentations,
        doc="on-the-fly augmentation of training images (deep families), or [none]",
        space=choice(["none"], ["flip", "rotate90"], ["flip", "rotate90", "hed"]))
    mixed_precision: Union[Literal["auto", "on", "off"], bool] = option(
        "auto", doc="deep families: auto = float16 on GPUs that support it, float32 on CPU; "
                    "on/off (YAML may read them as true/false: same meaning)")
    deterministic: bool = option(False, doc="deep families: deterministic TensorFlow ops (slower)")
    jit_compile: bool = option(False, doc="deep families: compile training steps with XLA")
    fraction: float = option(1.0, gt=0.0, le=1.0, doc="train on this share of the training images "
                             "(stratified; drawn from split.seed and seed, nested across fractions); "
                             "validation and test images unchanged")


#: ``predict.tta`` generators; their views are defined in :mod:`bmbench.deep.tta`.
TTA_GENERATORS = ("flip", "rotate90", "rotate180")


def _tta_views() -> list[str]:
    return list(TTA_GENERATORS)


@dataclass(frozen=True)
class PredictSpec:
    """``predict:``: how a trained model predicts test images, evaluation sets and ``bmbench
    predict`` inputs."""

    tta: tuple[str, ...] = option(
        (), choices=_tta_views,
        doc="test-time augmentation (deep families, hybrid embeddings): average the probabilities over "
            "the views these generate, e.g. [flip, rotate90] = all 8 turns and mirrors; [] = none")


@dataclass(frozen=True)
class AdaptSpec:
    """``evaluate[i].adapt``: few-shot adaptation to that evaluation set
    (:mod:`bmbench.runs.adaptation`)."""

    n_per_class: int = option(0, ge=0, le=100_000, doc="labelled images of every shared class "
                              "drawn from this set into the training images (every fold) and "
                              "left out of its test set; 0: none")
    seed: int = option(0, ge=0, le=MAX_SEED, doc="seed of the stratified draw (for one seed, a smaller "
                       "n_per_class draws a subset of a larger one)")
    repeat: int = option(1, ge=1, le=1000, doc="each drawn image enters the training images this "
                         "many times (oversampling: a few target cells otherwise weigh little "
                         "against hundreds of source cells)")
    transductive: Literal["none", "adabn", "standardize", "coral"] = option(
        "none", doc="transductive: adapt the trained model to the statistics of this set's unlabelled "
                    "test images before predicting them (labels never read): adabn (cnn, transfer: "
                    "BatchNorm statistics re-estimated), standardize or coral (classical, hybrid: "
                    "features mapped onto the training features' mean and spread, or covariance)")


@dataclass(frozen=True)
class EvaluateSpec(DatasetSpec):
    """One ``evaluate`` entry: a data set like ``dataset``, plus its few-shot ``adapt``."""

    adapt: AdaptSpec = option(AdaptSpec(), doc="{n_per_class: k, seed: s}: train also on k "
                              "labelled images per class of this set, test on the rest; "
                              "{transductive: mode}: adapt to its unlabelled test images")


def _metrics() -> tuple[str, ...]:
    from ..metrics.scores import HEADLINE

    return HEADLINE


@dataclass(frozen=True)
class TuneSpec:
    """``tune:``: how ``bmbench tune`` searches this recipe (:mod:`bmbench.runs.tune`). Not part
    of a run's fingerprint: it changes how a recipe is chosen, not what one run does."""

    metric: str = option("macro_f1", choices=_metrics, doc="the score a study maximises (or "
                         "minimises: log_loss, ece, brier) on the validation images")
    trials: Optional[int] = option(None, ge=1, le=100_000, doc="trial budget (default 40, or none "
                                   "with minutes); the recipe's own values are trial 0")
    minutes: Optional[float] = option(None, gt=0.0, le=1_000_000.0, doc="wall-clock budget, minutes")
    cv: Optional[int] = option(None, ge=2, le=20, doc="score each trial by k-fold cross-validation "
                               "inside the training and validation images instead of on the "
                               "validation split")
    seed: int = option(0, ge=0, doc="seed of the TPE sampler (worker i of a parallel study: seed + i)")
    pruner: Literal["median", "hyperband", "none"] = option(
        "median", doc="deep families: stop trials whose per-epoch validation score trails")
    space: Any = option(None, doc="{key: {int|log_int|float|log_float: [low, high]} or {choice: "
                        "[...]}}; default: the ranges declared beside each option of the family")


@dataclass(frozen=True)
class Recipe:
    name: str = option(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*", doc="run name")
    dataset: DatasetSpec = option(doc="which images")
    model: ModelSpec = option(doc="which method")
    description: str = option("", doc="free text")
    seed: int = option(0, ge=0, le=MAX_SEED, doc="training seed (repeats use seed+1, ...)")
    split: SplitSpec = option(SplitSpec(), doc="how images are divided")
    train: TrainSpec = option(TrainSpec(), doc="training settings")
    evaluate: tuple[EvaluateSpec, ...] = option(
        (), doc="other data sets to test the trained model on (cross-data-set evaluation); "
                "image size and padding come from 'dataset'; 'adapt' trains on a few of their "
                "labelled images")
    predict: PredictSpec = option(PredictSpec(), doc="how test images are predicted (test-time augmentation)")
    repeats: int = option(1, ge=1, le=1000, doc="run with this many seeds (seed, seed+1, ...)")
    tune: Optional[TuneSpec] = option(None, doc="search settings of `bmbench tune` (metric, "
                                      "trials, minutes, cv, seed, space)")
    source: str = option("", doc="file the recipe came from", internal=True)

    def to_dict(self) -> dict:
        """The resolved recipe as plain data (kind/family options flattened back)."""
        tune = self.tune
        out = _flatten(dataclasses.asdict(dataclasses.replace(self, tune=None)))
        del out["tune"]  # absent when unset, so recipes without it keep their fingerprints
        if tune is not None:
            space = tune.space.to_plain() if tune.space is not None and tune.space.given else None
            out["tune"] = {**{f.name: getattr(tune, f.name) for f in dataclasses.fields(tune)}, "space": space}
        return out

    def fingerprint(self, ignore: tuple[str, ...] = ()) -> str:
        """Hash of everything that affects the result (not the name, description, source or
        repeat count; nor the top-level keys in ``ignore``, e.g. ``("seed",)``)."""
        skip = ("name", "description", "source", "repeats", "tune", *ignore)
        data = {k: v for k, v in self.to_dict().items() if k not in skip}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def with_overrides(self, overrides: list[str]) -> "Recipe":
        raw = self.to_dict()
        for text in overrides:
            apply_override(raw, text, self.source)
        return recipe_from_dict(raw, self.source)


def _flatten(d: dict) -> dict:
    out = dict(d)
    for section in ("dataset", "model"):
        out[section] = _flat_section(out[section])
    for key, default in INERT_MODEL_DEFAULTS.items():
        if out["model"].get(key, default) == default:
            out["model"].pop(key, None)
    out["evaluate"] = [_flat_evaluate(e) for e in out.get("evaluate", ())]
    if not out.get("predict", {}).get("tta"):  # absent when inert: today's fingerprints stay
        out.pop("predict", None)
    return out


def _flat_evaluate(entry: dict) -> dict:
    sec = _flat_section(entry)
    adapt = sec["adapt"]  # inert parts absent, so recipes without them keep today's fingerprints
    if adapt["transductive"] == "none":
        del adapt["transductive"]
    if adapt["repeat"] == 1:
        del adapt["repeat"]
    if not adapt["n_per_class"]:
        adapt = {k: v for k, v in adapt.items() if k == "transductive"}
    if adapt:
        sec["adapt"] = adapt
    else:
        del sec["adapt"]
    return sec


def _flat_section(section: dict) -> dict:
    sec = dict(section)
    sec.update(sec.pop("options") or {})
    for key, value in sec.items():  # values validated by a registry entry know their plain form
        if hasattr(value, "to_plain"):
            sec[key] = value.to_plain()
    for key in OPTIONAL_KEYS:  # absent when unset, so older recipes keep their fingerprints
        if sec.get(key, 0) is None:
            del sec[key]
    steps = sec.pop("preprocess", ())
    if steps:  # absent when empty, so recipes without steps keep their fingerprints
        sec["preprocess"] = [{st["name"]: st["options"]} if st["options"] else st["name"] for st in steps]
    return sec


def _step_specs(items: tuple, ctx: Context) -> tuple[StepSpec, ...]:
    out = []
    for i, item in enumerate(items):
        here = ctx.child(i)
        if isinstance(item, str):
            name, opts = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, opts = next(iter(item.items()))
        else:
            raise here.error("expected a step name or a one-key mapping {name: {options}}")
        if not isinstance(name, str) or name not in PREPROCESSING:
            raise here.error(f"unknown {PREPROCESSING.what} {name!r}{did_you_mean(name, PREPROCESSING.names())}; "
                             f"known: {known_list(PREPROCESSING.names()) or 'none installed'}")
        out.append(StepSpec(name, build(PREPROCESSING.get(name).Options, opts or {}, here.child(name))))
    return tuple(out)


# --- loading -------------------------------------------------------------------------------

def load_recipe(path: str | os.PathLike, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read, merge, expand and validate the recipe at ``path``."""
    path = Path(path)
    raw = _read_with_extends(path, ())
    raw.setdefault("name", path.stem)
    for text in overrides:
        apply_override(raw, text, str(path))
    source = f"{path}" + (" (with --set overrides)" if overrides else "")
    return recipe_from_dict(raw, source)


def recipe_from_dict(raw: dict, source: str = "<recipe>") -> Recipe:
    ctx = Context(source)
    if not isinstance(raw, dict):
        raise ctx.error("a recipe must be a mapping of keys to values")
    raw = dict(raw)
    raw.pop("source", None)
    if isinstance(raw.get("dataset"), dict) and "adapt" in raw["dataset"]:
        raise ctx.child("dataset").child("adapt").error(
            "adapt draws labelled images of an evaluation set into the training images; give it "
            "in an evaluate entry (evaluate: [{kind: ..., adapt: {n_per_class: 10}}]), not under dataset")
    for section, selector in (("dataset", "kind"), ("model", "family")):
        if section in raw:
            raw[section] = _split_options(raw[section], section, selector, ctx.child(section))
    if isinstance(raw.get("evaluate"), list):
        raw["evaluate"] = [_split_options(e, "dataset", "kind", ctx.child("evaluate").child(i), EvaluateSpec)
                           for i, e in enumerate(raw["evaluate"])]
    recipe = build(Recipe, raw, ctx)
    recipe = dataclasses.replace(recipe, dataset=dataclasses.replace(
        recipe.dataset, preprocess=_step_specs(recipe.dataset.preprocess, ctx.child("dataset").child("preprocess"))))
    for i, e in enumerate(recipe.evaluate):
        if e.preprocess:
            raise ctx.child("evaluate").child(i).child("preprocess").error(
                "images of an evaluation go through the training run's steps (fitted on its "
                "training images); remove this key")
        if e.positive_class is not None:
            raise ctx.child("evaluate").child(i).child("positive_class").error(
                "evaluations are scored with the run's dataset.positive_class; remove this key")
        for key in (*PHYSICAL_KEYS[1:], "preprocess_reference"):
            if getattr(e, key) is not None:
                raise ctx.child("evaluate").child(i).child(key).error(
                    f"evaluation images are resampled to the run's dataset.{key}; remove this key "
                    "(give this set's own microns_per_pixel instead)")
    _check_pixel_sizes(recipe, ctx)
    _check_transductive(recipe, ctx)
    _check_split(recipe.split, ctx.child("split"))
    check_seeds(recipe.seed, recipe.repeats, ctx)
    if recipe.tune is not None:
        from .space import parse_space

        space = parse_space(recipe.tune.space, recipe, ctx.child("tune").child("space"))
        recipe = dataclasses.replace(recipe, tune=dataclasses.replace(recipe.tune, space=space))
    d = recipe.dataset
    if d.preprocess_reference is not None and not d.preprocess:
        raise ctx.child("dataset").child("preprocess_reference").error(
            "a reference folder is only used by dataset.preprocess steps; add steps or remove this key")
    augment = recipe.train.augment
    if "none" in augment and len(augment) > 1:
        raise ctx.child("train").child("augment").error(
            f"'none' cannot be combined with other augmentations, got {list(augment)}")
    return dataclasses.replace(recipe, source=source.split(" (with")[0])


#: ``evaluate[i].adapt.transductive`` modes: what each does, in one line.
TRANSDUCTIVE = {"adabn": "re-estimates BatchNorm statistics", "standardize": "standardises handcrafted "
                "and embedding features", "coral": "aligns the covariance of handcrafted and embedding features"}


def _check_transductive(recipe: Recipe, ctx: Context) -> None:
    """Each transductive mode only for the families that declare it (``Family.transductive``),
    and AdaBN only for networks that have BatchNorm layers."""
    family = FAMILIES.get(recipe.model.family)
    modes = getattr(family, "transductive", ())
    for i, e in enumerate(recipe.evaluate):
        mode = e.adapt.transductive
        if mode == "none":
            continue
        where = ctx.child("evaluate").child(i).child("adapt").child("transductive")
        if mode not in modes:
            fits = [name for name, entry in FAMILIES.items() if mode in getattr(entry, "transductive", ())]
            hint = f"family {family.name} supports {', '.join(modes)}" if modes else \
                f"family {family.name} supports no transductive mode"
            raise where.error(f"{mode} {TRANSDUCTIVE[mode]} of families {', '.join(fits)}; {hint} (or none)")
        norm = getattr(recipe.model.options, "norm", "batch")
        if mode == "adabn" and norm != "batch":
            raise where.error(f"adabn re-estimates BatchNorm statistics, and model.norm: {norm} has none; "
                              "use norm: batch, or transductive: none")


def _check_split(split: SplitSpec, ctx: Context) -> None:
    """The test and validation shares must leave training images, and validation may take
    at most half of what the test set leaves (the split draws it from there; a larger share
    used to be cut to that half silently, and the recipe's value recorded)."""
    if split.strategy == "predefined" and split.val > 0.5:
        raise ctx.child("val").error(
            f"{split.val:g} is more than half of the predefined training images; use at most 0.5")
    if split.strategy == "predefined" or split.val == 0:
        return
    test, where = (1.0 / split.folds, f"1/split.folds = {1.0 / split.folds:.3g}") if split.folds \
        else (split.test, f"split.test = {split.test:g}")
    if test + split.val >= 1.0:
        raise ctx.child("val").error(
            f"{where} plus split.val = {split.val:g} is {test + split.val:.3g}, which leaves no "
            "training images; make their sum well below 1")
    if split.val > (1.0 - test) / 2 + 1e-12:
        raise ctx.child("val").error(
            f"{split.val:g} is more than half of the images {where} leaves for training "
            f"(at most {(1.0 - test) / 2:.3g}); lower split.val or split.test")


def check_seeds(seed: int, repeats: int, ctx: Context, what: str = "repeats") -> None:
    """``seed + repeats - 1`` (the last repeat's training seed) must fit NumPy's seeds."""
    if seed + repeats - 1 > MAX_SEED:
        raise ctx.child("seed").error(
            f"{seed} with {what} {repeats} reaches seed {seed + repeats - 1}; seeds must fit "
            f"NumPy's 0 <= seed < 2**32, so use seed <= {MAX_SEED - repeats + 1}")


def _check_pixel_sizes(recipe: Recipe, ctx: Context) -> None:
    d = recipe.dataset
    if d.field_um is not None and d.target_microns_per_pixel is None:
        raise ctx.child("dataset").child("field_um").error(
            "a field of view in µm needs dataset.target_microns_per_pixel; set it or remove field_um")
    if d.target_microns_per_pixel is None:
        return
    sets = [(ctx.child("dataset"), d), *((ctx.child("evaluate").child(i), e) for i, e in enumerate(recipe.evaluate))]
    for where, spec in sets:
        kind = DATASET_KINDS.get(spec.kind)
        if spec.microns_per_pixel is None and getattr(kind, "microns_per_pixel", None) is None:
            raise where.child("microns_per_pixel").error(
                f"the pixel size of {spec.kind} images is {getattr(kind, 'pixel_size_note', 'unknown')}, "
                "so they cannot be resampled to dataset.target_microns_per_pixel; give it in µm/px "
                "(`bmbench datasets check ROOT --kind KIND --scale-reference KIND:ROOT` estimates it)")


def _split_options(section: Any, name: str, selector: str, ctx: Context,
                   common_cls: type | None = None) -> dict:
    """Move the kind/family-specific keys of a flat section into a typed ``options`` object
    (``common_cls``: the section's own keys, default DatasetSpec or ModelSpec)."""
    if not isinstance(section, dict):
        raise ctx.error("expected a mapping of keys to values")
    if selector not in section:
        raise ctx.child(selector).error("required key is missing")
    options_cls = _options_class(name, section[selector], ctx.child(selector))
    common_cls = common_cls or (DatasetSpec if name == "dataset" else ModelSpec)
    common = {f.name for f in dataclasses.fields(common_cls)} - {"options"}
    specific = {f.name for f in dataclasses.fields(options_cls)}
    for key in section:
        if key not in common and key not in specific:
            valid = sorted(common | specific)
            raise ctx.child(key).error(
                f"unknown key{did_you_mean(key, valid)} for {selector} '{section[selector]}'; "
                f"valid keys here: {', '.join(valid)}")
    opts = {k: v for k, v in section.items() if k in specific and k not in common}
    out = {k: v for k, v in section.items() if k in common}
    out["options"] = build(options_cls, opts, ctx)
    return out


def _options_class(section: str, selected: Any, ctx: Context) -> type:
    registry = DATASET_KINDS if section == "dataset" else FAMILIES
    if str(selected) not in registry:
        raise ctx.error(f"unknown {registry.what} {selected!r}{did_you_mean(selected, registry.names())}; "
                        f"known: {known_list(registry.names())}")
    entry = registry.get(str(selected))
    return entry.options if section == "dataset" else entry.Options


class TooDeep(yaml.YAMLError):
    """A value nested deeper than :data:`MAX_DEPTH` (raised while composing, before the
    parser's recursion can exhaust Python's stack)."""

    def __init__(self, mark):
        super().__init__(f"values nested deeper than {MAX_DEPTH} levels")
        self.problem_mark = mark


class _SafeNoAliasLoader(yaml.SafeLoader):
    """Safe loader that refuses aliases, so 'billion laughs' recipes cannot explode memory,
    and values nested deeper than :data:`MAX_DEPTH` levels."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in recipes", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise TooDeep(self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml_value(text: str) -> Any:
    """``text`` (a recipe file's or a ``--set`` / ``--vary`` value's) parsed with :class:`_SafeNoAliasLoader`; values YAML reads but Python cannot
    hold (an integer of thousands of digits, a date like 2023-02-30) raise ``ValueError``
    with a plain message."""
    try:
        return yaml.load(text, Loader=_SafeNoAliasLoader)  # noqa: S506 (safe loader subclass)
    except (ValueError, OverflowError) as exc:
        if "integer string conversion" in str(exc):
            raise ValueError("a number has more than 4300 digits") from None
        raise ValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


#: Plain words for the YAML parser's messages: (part of the problem or context, hint).
_YAML_HINTS = (
    ("'\\t'", "indent with spaces, not tabs"),
    ("<block end>", "a line is indented differently from the keys beside it; align keys of one "
                    "mapping at the same column"),
    ("mapping values are not allowed", "a value contains ': '; put it in quotes"),
    ("flow sequence", "a [list] is not closed; check its brackets and commas"),
    ("flow mapping", "a {mapping} is not closed; check its braces and commas"),
    ("quoted scalar", "a quote is not closed"),
)


def _yaml_hint(problem: str, context: str) -> str:
    text = f"{problem} {context}"
    for needle, hint in _YAML_HINTS:
        if needle in text:
            return f"; {hint}"
    return ""


def read_yaml(path: Path) -> Any:
    """``safe_load`` one YAML file with errors that name it: only a regular file of at most
    :data:`MAX_RECIPE_BYTES` is read (never a FIFO or a device such as /dev/zero), and
    values nested deeper than :data:`MAX_DEPTH` levels are refused."""
    try:
        text = _read_capped(path).decode("utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder; give a recipe .yaml file") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: recipe is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    try:
        data = load_yaml_value(text)
    except TooDeep as exc:
        raise RecipeError(f"{path}:{exc.problem_mark.line + 1}: values nested deeper than "
                          f"{MAX_DEPTH} levels; recipes need a few levels, flatten this value") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = _yaml_hint(problem, getattr(exc, "context", None) or "")
        raise RecipeError(f"{path}{where}: invalid YAML ({problem}){hint}") from None
    except ValueError as exc:
        raise RecipeError(f"{path}: invalid value ({exc}); quote it to keep it as text") from None
    if data is None:
        raise RecipeError(f"{path}: recipe is empty; see recipes/quickstart.yaml for an example")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of keys to values, got a {type(data).__name__}")
    return data


def _read_capped(path: Path) -> bytes:
    """The bytes of the regular file ``path``, at most :data:`MAX_RECIPE_BYTES`. Opened
    without blocking, so a FIFO with no writer is refused instead of waited on."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise RecipeError(f"{path}: not a regular file (a pipe, socket or device); give a "
                              "recipe .yaml file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_RECIPE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: larger than {MAX_RECIPE_BYTES >> 20} MiB, too large for a "
                          "recipe; give the recipe file, not a data file")
    return data


def _read_with_extends(path: Path, chain: tuple[Path, ...]) -> dict:
    real = path.resolve()
    if real in chain:
        cycle = " -> ".join(str(p) for p in (*chain, real))
        raise RecipeError(f"{path}: 'extends' forms a cycle: {cycle}")
    if len(chain) >= MAX_EXTENDS:
        raise RecipeError(f"{chain[0]}: 'extends' chains more than {MAX_EXTENDS} recipes "
                          f"(stopped at {path}); merge some of them")
    raw = _expand_env(read_yaml(path), Context(str(path)))
    _resolve_paths(raw, path.parent, str(path))
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise RecipeError(f"{path}: extends: expected a path to another recipe")
    base_path = Path(absolute_path(base, path.parent, Context(str(path), "extends")))
    return deep_merge(_without_switched_specifics(_read_with_extends(base_path, (*chain, real)), raw), raw)


def _without_switched_specifics(base: dict, top: dict) -> dict:
    """A recipe that extends another with a different dataset kind or model family does not
    inherit the base kind's or family's own options (as ``--set dataset.kind=...`` does), nor,
    with another family, the base's description (it describes the base's method)."""
    out = dict(base)
    for (section, key), common_cls in SELECTORS.items():
        old, new = base.get(section), top.get(section)
        if isinstance(old, dict) and isinstance(new, dict) and key in new and new[key] != old.get(key):
            out[section] = dict(old)
            _drop_specific(out[section], common_cls)
            if section == "model":  # the base's description names the base's method
                out.pop("description", None)
    return out


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``; nested mappings merge, everything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _expand_env(value: Any, ctx: Context) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, ctx.child(str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, ctx.child(i)) for i, v in enumerate(value)]
    if isinstance(value, str):
        return _ENV.sub(lambda m: _env_value(m.group(1), ctx), value)
    return value


def _env_value(name: str, ctx: Context) -> str:
    if name not in os.environ:
        raise ctx.error(f"environment variable ${{{name}}} is not set; export it or edit the recipe")
    return os.environ[name]


#: Keys of a ``model.backbone`` mapping that hold paths (``run`` only when it names a folder).
ENCODER_PATH_KEYS = ("path", "results", "run")


def _encoder_path(key: str, value: Any) -> bool:
    """Whether ``model.backbone.<key>`` is a path to resolve: ``path`` and ``results``
    always; ``run`` when it looks like a folder (a run id or recipe name stays as it is)."""
    if not isinstance(value, str):
        return False
    return key in ("path", "results") or (key == "run" and ("/" in value or os.sep in value))


def _resolve_paths(raw: dict, base: Path, source: str = "<recipe>") -> None:
    ctx = Context(source)
    backbone = raw.get("model", {}).get("backbone") if isinstance(raw.get("model"), dict) else None
    if isinstance(backbone, dict):
        for key in ENCODER_PATH_KEYS:
            if _encoder_path(key, backbone.get(key)):
                backbone[key] = absolute_path(backbone[key], base, ctx.child("model").child("backbone").child(key))
    for section, key in PATH_KEYS:
        sec = raw.get(section)
        if isinstance(sec, dict) and _is_path(section, key, sec.get(key)):
            sec[key] = absolute_path(sec[key], base, ctx.child(section).child(key))
    entries = raw.get("evaluate") if isinstance(raw.get("evaluate"), list) else []
    for sec in [*entries, *_parts_of(raw.get("dataset")), *(p for e in entries for p in _parts_of(e))]:
        for key in ("root", "ids"):
            if isinstance(sec, dict) and isinstance(sec.get(key), str):
                sec[key] = absolute_path(sec[key], base, ctx.child(key))


def _parts_of(section: Any) -> list:
    """The ``parts`` entries of a ``dataset`` (or evaluate) mapping of kind ``merged``."""
    parts = section.get("parts") if isinstance(section, dict) else None
    return parts if isinstance(parts, list) else []


def _is_path(section: str, key: str, value: Any) -> bool:
    return isinstance(value, str) and value not in PATH_KEYWORDS.get((section, key), ())


def absolute_path(value: str, base: Path, ctx: Context | None = None) -> str:
    """A path value made absolute: ``$NAME`` / ``${NAME}`` from the environment (an unset
    one is an error), ``~`` / ``~user`` expanded, relative paths taken from ``base``. No
    shell is involved: nothing else in the value is interpreted."""
    ctx = ctx or Context("<recipe>")
    if "\0" in value:
        raise ctx.error("a path cannot contain a NUL character")
    value = _PATH_ENV.sub(lambda m: _env_value(m.group(1) or m.group(2), ctx), value)
    try:
        p = Path(value).expanduser()
    except RuntimeError:
        raise ctx.error(f"cannot expand {value.split('/')[0]!r}: no such user or home folder") from None
    try:
        return str(p if p.is_absolute() else (base / p).resolve())
    except (OSError, RuntimeError, ValueError) as exc:
        raise ctx.error(f"cannot resolve the path {value!r} ({getattr(exc, 'strerror', None) or exc})") from None


def apply_override(raw: dict, text: str, source: str) -> None:
    """Apply ``key.path=value`` (value parsed as YAML) to ``raw`` in place."""
    key, sep, value_text = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {_cut(text)!r}: expected KEY.PATH=VALUE, e.g. --set dataset.image_size=32")
    if len(text.encode("utf-8", "replace")) > MAX_RECIPE_BYTES:
        raise RecipeError(f"--set {key.strip()}: value larger than {MAX_RECIPE_BYTES >> 20} MiB")
    try:
        value = load_yaml_value(value_text)
    except TooDeep:
        raise RecipeError(f"--set {key.strip()}: value nested deeper than {MAX_DEPTH} levels; "
                          "flatten it") from None
    except ValueError as exc:
        raise RecipeError(f"--set {key.strip()}: invalid value ({exc}); quote it to keep it as text") from None
    except yaml.YAMLError:
        value = value_text
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = _override_child(node, part, parts[i + 1].isdigit(), text, ".".join(parts[:i + 1]))
    if isinstance(node, list):
        raise RecipeError(f"--set {text!r}: '{'.'.join(parts[:-1])}' is a list; set a key of one "
                          "entry, e.g. evaluate.0.root=DIR")
    entry_key = parts[2] if len(parts) == 3 and parts[0] == "evaluate" else None  # evaluate.<i>.<key>
    part_key = parts[-1] if len(parts) >= 4 and parts[-3] == "parts" else None  # dataset.parts.<i>.<key>
    is_path = tuple(parts) in PATH_KEYS or entry_key in ("root", "ids") or part_key in ("root", "ids")
    if len(parts) == 3 and parts[:2] == ["model", "backbone"] and _encoder_path(parts[2], value):
        is_path = True
    if is_path and _is_path(parts[0], parts[-1], value):
        value = absolute_path(_expand_env(value, Context("--set", key)), Path.cwd(), Context("--set", key))
    selector = (SELECTORS.get(tuple(parts)) or (EvaluateSpec if entry_key == "kind" else None)
                or (DatasetSpec if part_key == "kind" else None))
    if selector and node.get(parts[-1]) != value:
        _drop_specific(node, selector)
    node[parts[-1]] = value


def _cut(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def _override_child(node: dict | list, part: str, list_next: bool, text: str, where: str) -> dict | list:
    """The section ``part`` of ``node`` for ``--set``: a mapping key (an empty section is
    created when missing, so ``evaluate.0.adapt.n_per_class`` works without ``adapt``) or
    the index of a list entry (``evaluate.0``)."""
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise RecipeError(f"--set {text!r}: '{where.rpartition('.')[0]}' is a list of {len(node)} "
                              f"entr{'y' if len(node) == 1 else 'ies'}; {part!r} is not one of its indices")
        nxt = node[int(part)]
    else:
        nxt = node.get(part)
        if nxt is None and list_next:
            raise RecipeError(f"--set {text!r}: the recipe has no '{where}' list; add its entries "
                              "to the recipe first")
        if nxt is None:
            nxt = node[part] = {}
    if not isinstance(nxt, (dict, list)):
        raise RecipeError(f"--set {text!r}: '{where}' is not a section")
    return nxt


def _drop_specific(section: dict, common_cls: type) -> None:
    """Switching kind or family drops the old one's own keys; the common keys stay."""
    common = {f.name for f in dataclasses.fields(common_cls)} | {"lab"}  # a merged part's lab stays
    for key in [k for k in section if k not in common]:
        del section[key]


SELECTORS = {("dataset", "kind"): DatasetSpec, ("model", "family"): ModelSpec}


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML text (re-loadable with :func:`recipe_from_dict`)."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True)


def dataset_spec(raw: dict, source: str = "command line") -> DatasetSpec:
    """Validate a flat ``dataset`` mapping on its own (for commands that take no recipe)."""
    return dataset_spec_at(raw, Context(source, "dataset"))


def split_spec(raw: dict, source: str = "command line") -> SplitSpec:
    """Validate a ``split`` mapping on its own (``bmbench datasets check --split``)."""
    ctx = Context(source, "split")
    spec = build(SplitSpec, raw, ctx)
    _check_split(spec, ctx)
    return spec


def dataset_spec_at(raw: dict, ctx: Context) -> DatasetSpec:
    """Validate a flat ``dataset``-like mapping found at ``ctx`` (errors name that key path,
    e.g. ``dataset.parts[1].label_map``)."""
    spec = build(DatasetSpec, _split_options(raw, "dataset", "kind", ctx), ctx)
    return dataclasses.replace(spec, preprocess=_step_specs(spec.preprocess, ctx.child("preprocess")))

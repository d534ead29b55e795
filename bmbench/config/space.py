"""Search spaces for ``bmbench tune``: the values a study may try for one option, declared
beside the option itself (``option(6, ge=1, le=64, space=ints(2, 10))``) and overridable in a
recipe's ``tune.space``.

A recipe's space maps recipe key paths (as ``--set`` writes them: ``model.classifier.max_depth``,
``model.dropout``, ``train.learning_rate``) to one of

- ``{int: [low, high]}`` / ``{log_int: [low, high]}``: integers, uniform or log-uniform;
- ``{float: [low, high]}`` / ``{log_float: [low, high]}``: numbers, uniform or log-uniform;
- ``{choice: [v1, v2, ...]}``: one of these values (lists allowed, e.g. augmentation sets).

Every bound and choice is validated as a value of the option it searches (its type and its
``ge``/``le``/``gt``/``lt``/``choices``), so a space can never propose a recipe that would not
validate; errors name the key. The default space of a recipe (:func:`default_space`) is every
option of its family, of its tabular classifier and of the training settings the family reads
(``Family.tuned_train``) that declares a ``space``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from ..core.registry import did_you_mean, known_list

KINDS = ("int", "log_int", "float", "log_float", "choice")
#: Training keys a study never searches: they change speed, not the model.
UNTUNABLE_TRAIN = ("jobs", "mixed_precision", "deterministic", "jit_compile", "fraction")


@dataclass(frozen=True)
class Space:
    """One option's search range: ``kind`` (one of :data:`KINDS`) and ``values``: ``(low,
    high)``, or the choices (lists given as tuples)."""

    kind: str
    values: tuple

    @property
    def log(self) -> bool:
        return self.kind.startswith("log_")

    def to_plain(self) -> dict:
        return {self.kind: [list(v) if isinstance(v, tuple) else v for v in self.values]}

    def encode(self, value: Any) -> Any:
        """``value`` as Optuna stores it (choices that are lists become ``"a+b"`` strings)."""
        if self.kind == "choice" and isinstance(value, tuple):
            return "+".join(map(str, value))
        return value

    def decode(self, value: Any) -> Any:
        """The recipe value of a stored parameter (inverse of :meth:`encode`)."""
        if self.kind == "choice":
            for choice in self.values:
                if self.encode(choice) == value:
                    return list(choice) if isinstance(choice, tuple) else choice
        return value

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        return value is not None and self.values[0] <= value <= self.values[1]

    def widened(self, value: Any) -> "Space":
        """This space with ``value`` (a recipe's own, valid value) added, so that the recipe
        itself can be trial 0 of a study."""
        if value is None or self.contains(value):
            return self
        if self.kind == "choice":
            return Space(self.kind, (value, *self.values))
        low, high = self.values
        return Space(self.kind, (min(low, value), max(high, value)))

    def distribution(self):
        """The Optuna distribution of this space (imports Optuna)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution([self.encode(v) for v in self.values])
        low, high = self.values
        if self.kind in ("int", "log_int"):
            return IntDistribution(int(low), int(high), log=self.log)
        return FloatDistribution(float(low), float(high), log=self.log)


def ints(low: int, high: int, log: bool = False) -> Space:
    return Space("log_int" if log else "int", (low, high))


def floats(low: float, high: float, log: bool = False) -> Space:
    return Space("log_float" if log else "float", (float(low), float(high)))


def choice(*values) -> Space:
    return Space("choice", tuple(tuple(v) if isinstance(v, list) else v for v in values))


@dataclass(frozen=True)
class SearchSpace:
    """A validated space: ``(key, Space)`` pairs in a fixed order; ``given`` is True when the
    recipe wrote it (``tune.space``) rather than taking the declared defaults."""

    items: tuple[tuple[str, Space], ...]
    given: bool = False

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def keys(self) -> list[str]:
        return [k for k, _ in self.items]

    def to_plain(self) -> dict:
        return {k: s.to_plain() for k, s in self.items}

    def get(self, key: str) -> Space:
        return dict(self.items)[key]


# --- which keys a recipe can search -----------------------------------------------------------

@dataclass(frozen=True)
class _Target:
    """Where a key's option is declared: its dataclass field and type, and the key it is
    written as in a recipe (shorthands resolve to their classifier key)."""

    key: str
    field: dataclasses.Field
    type: Any


def tunable(recipe) -> dict[str, _Target]:
    """``{key: target}`` of every option a study of ``recipe`` may search."""
    out: dict[str, _Target] = {}
    opts = recipe.model.options
    choice_ = getattr(opts, "classifier", None)
    shorthands = set()
    if hasattr(choice_, "entry"):  # a family ending in a tabular classifier
        cls = choice_.entry.Options
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out[f"model.classifier.{f.name}"] = _Target(f"model.classifier.{f.name}", f, hints[f.name])
        shorthands = {f.name for f in dataclasses.fields(tabular_base(opts))} - {"classifier"}
    hints = typing.get_type_hints(type(opts))
    for f in dataclasses.fields(type(opts)):
        if f.name in shorthands or f.name == "classifier" or f.metadata.get("internal"):
            continue
        out[f"model.{f.name}"] = _Target(f"model.{f.name}", f, hints[f.name])
    train_cls = type(recipe.train)
    hints = typing.get_type_hints(train_cls)
    for f in dataclasses.fields(train_cls):
        if f.name not in UNTUNABLE_TRAIN:
            out[f"train.{f.name}"] = _Target(f"train.{f.name}", f, hints[f.name])
    return out


def family_train(recipe) -> tuple[str, ...]:
    """The ``train`` keys ``recipe``'s family reads and searches by default (``Family.tuned_train``)."""
    from .registries import FAMILIES

    return tuple(getattr(FAMILIES.get(recipe.model.family), "tuned_train", ()))


def tabular_base(opts) -> type:
    """The :class:`~bmbench.models.tabular.TabularOptions` class among ``opts``' bases (found by
    its ``classifier_options`` method, so this layer does not import the models layer)."""
    for cls in type(opts).__mro__:
        if "classifier_options" in vars(cls):
            return cls
    return type(opts)


def _alias(key: str, targets: dict) -> str:
    """A flat classifier shorthand (``model.max_depth``) names the classifier's own option."""
    if key.startswith("model.") and key not in targets:
        inner = f"model.classifier.{key[len('model.'):]}"
        if inner in targets:
            return inner
    return key


def default_space(recipe) -> SearchSpace:
    """The declared spaces of ``recipe``'s family, classifier and the training keys its
    family reads, each widened to hold the recipe's own value."""
    targets = tunable(recipe)
    trained = set(family_train(recipe))
    items = []
    for key, t in targets.items():
        space = t.field.metadata.get("space")
        if space is None or (key.startswith("train.") and key[len("train."):] not in trained):
            continue
        items.append((key, space.widened(current_value(recipe, key))))
    return SearchSpace(tuple(items))


def parse_space(raw: Any, recipe, ctx) -> SearchSpace:
    """Validate a recipe's ``tune.space`` (``ctx`` names it in errors) against ``recipe``."""
    from .schema import _check_bounds, convert

    if raw is None:
        return default_space(recipe)
    if not isinstance(raw, Mapping) or not raw:
        raise ctx.error("expected a mapping of recipe keys to ranges, e.g. "
                        "{model.classifier.max_depth: {int: [2, 10]}}")
    targets = tunable(recipe)
    items = []
    for key, spec in raw.items():
        here = ctx.child(str(key))
        resolved = _alias(str(key), targets)
        if resolved not in targets:
            valid = sorted(targets)
            raise here.error(f"not an option of {recipe.model.family} that a study can search"
                             f"{did_you_mean(str(key), valid)}; searchable keys: {known_list(valid)}")
        t = targets[resolved]
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise here.error(f"expected one of {{{': [...]}, {'.join(KINDS)}: [...]}}, e.g. {{int: [2, 10]}}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, (list, tuple)) or not values:
            raise here.error(f"{kind}: expected a list of values")
        checked = []
        for i, v in enumerate(values):
            where = here.child(kind).child(i)
            value = convert(t.type, v, where)
            checked.append(_check_bounds(value, t.field.metadata, where))
        if kind != "choice":
            _check_range(kind, checked, t, here.child(kind))
        space = Space(kind, tuple(checked)) if kind != "choice" else choice(*checked)
        items.append((resolved, space.widened(current_value(recipe, resolved))))
    return SearchSpace(tuple(items), given=True)


def _check_range(kind: str, values: list, t: _Target, ctx) -> None:
    if len(values) != 2:
        raise ctx.error(f"expected [low, high], got {len(values)} value(s)")
    low, high = values
    if not isinstance(low, (int, float)) or isinstance(low, bool):
        raise ctx.error(f"{t.key} is not a number; use {{choice: [...]}}")
    if kind in ("int", "log_int") and not (isinstance(low, int) and isinstance(high, int)):
        raise ctx.error(f"{t.key} takes numbers with decimals; use float or log_float")
    if not low < high:
        raise ctx.error(f"low {low!r} must be below high {high!r}")
    if kind.startswith("log_") and low <= 0:
        raise ctx.error(f"a log range must start above 0, got {low!r}")


def current_value(recipe, key: str) -> Any:
    """The value ``recipe`` gives the option at ``key`` (the classifier's effective options
    for ``model.classifier.*``), lists as tuples."""
    section, _, rest = key.partition(".")
    if section == "train":
        return getattr(recipe.train, rest)
    opts = recipe.model.options
    if rest.startswith("classifier."):
        return getattr(opts.classifier_options(), rest[len("classifier."):])
    return getattr(opts, rest)

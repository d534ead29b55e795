"""Turn raw mappings (from YAML) into frozen, typed dataclasses, with errors that name the key.

A dataclass field declares its constraints in ``metadata`` via :func:`option`; :func:`build`
checks types, ranges and choices once, so code downstream trusts the objects it receives.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Mapping, Union

from ..core.registry import did_you_mean, known_list
from ..core.errors import RecipeError

_MISSING = dataclasses.MISSING
#: The largest seed NumPy's legacy generators, scikit-learn and ``np.random.seed`` accept
#: (seeds are ``0 <= seed < 2**32``).
MAX_SEED = 2 ** 32 - 1
#: Integers beyond 64 bits reach no library bmbench calls without overflowing.
_INT64 = 2 ** 63 - 1


def option(default: Any = _MISSING, *, doc: str = "", ge: float | None = None,
           le: float | None = None, gt: float | None = None, lt: float | None = None,
           pattern: str | None = None, choices: Any = None, parse: Any = None,
           internal: bool = False, space: Any = None) -> Any:
    """A dataclass field with documentation and numeric bounds (inclusive ``ge``/``le``,
    exclusive ``gt``/``lt``). ``choices`` is a callable returning the valid names (read
    from a registry when the recipe is validated). ``parse(value, ctx)`` validates the
    value (and the default) itself, for values whose shape depends on a registry entry
    (a classifier and its own options). ``internal`` keys (set by bmbench itself) are left
    out of the "valid keys" hints. Lists are given as tuples so the dataclass stays
    hashable. A ``ValueError`` from the dataclass's ``__post_init__`` becomes an error
    naming the section. ``space`` (a :class:`~bmbench.config.space.Space`) is the range
    ``bmbench tune`` searches by default; it must lie inside the bounds above (checked by
    the contract test of every option)."""
    meta = {"doc": doc, "ge": ge, "le": le, "gt": gt, "lt": lt, "pattern": pattern,
            "choices": choices, "parse": parse, "internal": internal, "space": space}
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Context:
    """Where a value came from, for error messages: the file and the dotted key path."""

    def __init__(self, source: str, path: str = ""):
        self.source = source
        self.path = path

    def child(self, key: str | int) -> "Context":
        part = f"[{key}]" if isinstance(key, int) else str(key)
        sep = "" if isinstance(key, int) or not self.path else "."
        return Context(self.source, f"{self.path}{sep}{part}")

    def error(self, message: str) -> RecipeError:
        where = f"{self.source}: " if self.source else ""
        key = f"{self.path}: " if self.path else ""
        return RecipeError(f"{where}{key}{message}")


def build(cls: type, data: Any, ctx: Context) -> Any:
    """Validate ``data`` (a mapping) into an instance of dataclass ``cls``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ctx.error(f"expected a mapping of keys to values, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    public = [name for name, f in fields.items() if not f.metadata.get("internal")]
    for key in data:
        if key not in fields:
            raise ctx.child(key).error(
                f"unknown key{did_you_mean(key, public)}; valid keys here: {known_list(public)}")
    values = {}
    for name, f in fields.items():
        sub = ctx.child(name)
        parse = f.metadata.get("parse")
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                raise sub.error("required key is missing")
            if parse is not None:
                values[name] = parse(f.default, sub)
            continue
        values[name] = parse(data[name], sub) if parse is not None else \
            _check_bounds(convert(hints[name], data[name], sub), f.metadata, sub)
    try:
        return cls(**values)
    except ValueError as exc:
        raise ctx.error(str(exc)) from None


def convert(tp: Any, value: Any, ctx: Context) -> Any:
    """Convert ``value`` to type ``tp`` or raise a :class:`RecipeError` naming ``ctx``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(args, value, ctx)
    if origin is Literal:
        if value not in args:
            shown = ", ".join(repr(a) for a in args)
            raise ctx.error(f"invalid value {value!r}{did_you_mean(value, args)}; choose one of {shown}")
        return value
    if origin is tuple:
        return _convert_tuple(args, value, ctx)
    if origin is dict:
        return _convert_dict(args, value, ctx)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, ctx)
    return _convert_scalar(tp, value, ctx)


def _convert_union(args: tuple, value: Any, ctx: Context) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise ctx.error("a value is required here, got null")
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return convert(arg, value, ctx)
        except RecipeError as exc:
            errors.append(str(exc))
    raise RecipeError(errors[0]) if len(errors) == 1 else ctx.error(
        f"invalid value {_describe(value)}; expected {_type_name_union(args)}")


def _convert_tuple(args: tuple, value: Any, ctx: Context) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ctx.error(f"expected a list, got {_describe(value)}")
    item_type = args[0] if args else Any
    return tuple(convert(item_type, v, ctx.child(i)) for i, v in enumerate(value))


def _convert_dict(args: tuple, value: Any, ctx: Context) -> dict:
    if not isinstance(value, Mapping):
        raise ctx.error(f"expected a mapping, got {_describe(value)}")
    value_type = args[1] if len(args) == 2 else Any
    return {str(k): convert(value_type, v, ctx.child(str(k))) for k, v in value.items()}


def _convert_scalar(tp: type, value: Any, ctx: Context) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ctx.error(f"expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > _INT64:
                raise ctx.error(f"value {_short(value)} is too large for an integer setting")
            return value
        raise ctx.error(f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise ctx.error(f"expected a finite number, got {_short(value)}")
            return number
        raise ctx.error(f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ctx.error(f"expected a string, got {_describe(value)}")
    raise TypeError(f"schema: unsupported field type {tp!r}")


def _check_bounds(value: Any, meta: Mapping, ctx: Context) -> Any:
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_bounds(item, meta, ctx.child(i))
        return value
    for item in (value,):
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            _check_number(item, meta, ctx)
        if isinstance(item, str) and meta.get("pattern"):
            import re
            if not re.fullmatch(meta["pattern"], item):
                raise ctx.error(f"invalid value {item!r}; must match {meta['pattern']}")
        if isinstance(item, str) and meta.get("choices"):
            valid = list(meta["choices"]())
            if item not in valid:
                raise ctx.error(f"unknown value '{item}'{did_you_mean(item, valid)}; "
                                f"known: {known_list(valid)}")
    return value


def _check_number(x: float, meta: Mapping, ctx: Context) -> None:
    checks = (("ge", lambda b: x >= b, ">="), ("le", lambda b: x <= b, "<="),
              ("gt", lambda b: x > b, ">"), ("lt", lambda b: x < b, "<"))
    for key, ok, sign in checks:
        bound = meta.get(key)
        if bound is not None and not ok(bound):
            note = " (seeds must fit NumPy's 0 <= seed < 2**32)" if bound in (MAX_SEED, MAX_SEED - 1) else ""
            raise ctx.error(f"value {_short(x)} is out of range; it must be {sign} {bound}{note}")


def _short(value: Any) -> str:
    """``repr(value)``, cut to 40 characters (a number may have thousands of digits)."""
    big = isinstance(value, int) and value.bit_length() > 100
    text = f"{'-' if value < 0 else ''}about 2**{value.bit_length() - 1}" if big else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"{_short(value)} ({type(value).__name__})"


def _type_name_union(args: tuple) -> str:
    names = [", ".join(repr(v) for v in typing.get_args(a)) if typing.get_origin(a) is Literal
             else getattr(a, "__name__", str(a)) for a in args if a is not type(None)]
    return " or ".join(names)

"""The shape of a JSON value read back from disk, declared as data and checked in one place.

Every JSON file bmbench reads back (``run.json``, ``metrics.json``, ``model.json``, split
files, cache records...) declares its shape in this one vocabulary, and :func:`shape` turns
the declaration into the check that :func:`~bmbench.core.untrusted.read_json` takes. A
problem names the field path (``field 'dataset.classes.2' is a int, expected str``).

A spec is one of:

* a type or a tuple of types, ``None`` standing for JSON null (``bool`` never passes where a
  number is asked, although Python counts it as an ``int``);
* a dict of specs: a JSON object with those keys, a key ending in ``?`` being optional;
  other keys are allowed (records written by newer bmbench versions);
* :class:`ListOf` or :class:`MapOf` (an object whose every value has one shape);
* a tuple mixing the above (alternatives, e.g. an interval or null);
* any other callable ``value -> problem | None``, for a bound such as :func:`integer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Check = Callable[[object], "str | None"]


@dataclass(frozen=True)
class ListOf:
    """A JSON list whose every item has the shape ``item`` (of exactly ``length`` items when
    given; at least one when ``non_empty``)."""

    item: object
    length: int | None = None
    non_empty: bool = False


@dataclass(frozen=True)
class MapOf:
    """A JSON object whose every value has the shape ``item`` (keys are strings in JSON)."""

    item: object


def integer(low: int, high: int) -> Check:
    """A spec: an integer in ``[low, high]``."""
    def check(value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"expected an integer from {low} to {high}, found {value!r:.40}"
        return None
    return check


def anything(value) -> None:
    """A spec that every value passes (a field that must be present, whatever it holds)."""
    return None


def shape(spec) -> Check:
    """The :func:`~bmbench.core.untrusted.read_json` check of ``spec``."""
    return lambda value: problem(value, spec)


def problem(value, spec, where: str = "") -> str | None:
    """What is wrong with ``value`` against ``spec`` (None when nothing), naming the field path."""
    if isinstance(spec, dict):
        return _object(value, spec, where)
    if isinstance(spec, ListOf):
        return _list(value, spec, where)
    if isinstance(spec, MapOf):
        if not isinstance(value, dict):
            return _wrong(value, "object", where)
        return next((p for k, v in value.items() if (p := problem(v, spec.item, f"{where}{k}."))), None)
    if callable(spec) and not isinstance(spec, type):
        found = spec(value)
        return f"field '{where.rstrip('.')}': {found}" if found and where else found
    return _kinds(value, spec if isinstance(spec, tuple) else (spec,), where)


def _object(value, spec: dict, where: str) -> str | None:
    if not isinstance(value, dict):
        return _wrong(value, "object", where)
    for key, sub in spec.items():
        name = key.rstrip("?")
        if name not in value:
            if key.endswith("?"):
                continue
            return f"lacks the field '{where}{name}'"
        found = problem(value[name], sub, f"{where}{name}.")
        if found:
            return found
    return None


def _list(value, spec: ListOf, where: str) -> str | None:
    if not isinstance(value, list):
        return _wrong(value, "list", where)
    if spec.length is not None and len(value) != spec.length:
        return f"field '{where.rstrip('.')}' has {len(value)} values, expected {spec.length}"
    if spec.non_empty and not value:
        return f"field '{where.rstrip('.') or '(top)'}' is empty"
    return next((p for i, item in enumerate(value) if (p := problem(item, spec.item, f"{where}{i}."))), None)


def _kinds(value, kinds: tuple, where: str) -> str | None:
    kinds = tuple(type(None) if k is None else k for k in kinds)
    shaped = [k for k in kinds if not isinstance(k, type)]
    if shaped:  # alternatives: a shape or plain types (e.g. an interval or null)
        plain = tuple(k for k in kinds if isinstance(k, type))
        if plain and _kinds(value, plain, where) is None:
            return None
        found = [problem(value, k, where) for k in shaped]
        return None if None in found else found[0]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        return _wrong(value, " or ".join("null" if k is type(None) else k.__name__ for k in kinds), where)
    return None


def _wrong(value, expected: str, where: str) -> str:
    found = "null" if value is None else type(value).__name__
    return f"field '{where.rstrip('.') or '(top)'}' is a {found}, expected {expected}"

"""One registry type for every plug-in point: name -> entry, with "did you mean" errors.

bmbench has six plug-in points (data set kinds, model families, feature families,
backbones, tabular classifiers, preprocessing steps). Each is a :class:`Registry`, filled by
``@REGISTRY.register("name")`` in bmbench's own modules (imported on first lookup, from
``builtins``) and by third-party packages through the entry-point group ``group``::

    # a plug-in's pyproject.toml
    [project.entry-points."bmbench.classifiers"]
    knn = "my_plugin.classifiers"      # a module whose import registers entries, or
    knn2 = "my_plugin.classifiers:KNN" # one object, registered under the entry point's name

Nothing is imported until a lookup needs it, so reading a recipe stays fast.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def known_list(choices) -> str:
    return ", ".join(sorted(str(c) for c in choices))


def describe_entry(entry) -> str:
    for attr in ("title", "description"):
        text = getattr(entry, attr, "")
        if isinstance(text, str) and text:
            return text.splitlines()[0]
    if callable(entry) and not isinstance(entry, type) and getattr(entry, "__doc__", None):
        return " ".join(entry.__doc__.split()).split(". ")[0].replace("``", "")
    return ""


class Registry(Generic[T]):
    """Entries of one kind by name.

    what: the kind in words, for errors ("model family"). group: the entry-point group of
    plug-ins ("bmbench.families"). builtins: modules whose import registers bmbench's own
    entries. error: the exception type of a failed lookup (given ``"<what> 'x' ...; known:
    ..."``). key: the recipe key naming an entry, prefixed to the error when given.
    """

    def __init__(self, what: str, group: str, builtins: tuple[str, ...] = (),
                 error: type[Exception] = KeyError, key: str = ""):
        self.what, self.group, self.builtins, self.error, self.key = what, group, builtins, error, key
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._origins: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, entry: T | None = None, *, aliases: tuple[str, ...] = ()):
        """Register ``entry`` under ``name``; without ``entry``, a decorator that registers
        what it decorates (and returns it unchanged)."""
        if entry is None:
            def decorate(obj: T) -> T:
                self.register(name, obj, aliases=aliases)
                return obj
            return decorate
        if name in self._entries or name in self._aliases:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def get(self, name: str) -> T:
        self.load()
        name = self._aliases.get(name, name)
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            prefix = f"{self.key}: " if self.key else ""
            raise self.error(f"{prefix}unknown {self.what} '{name}'{did_you_mean(name, self.names())}; "
                             f"known: {known_list(self.names())}") from None

    __getitem__ = get

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (in registration order) matching the shell-style ``pattern``."""
        self.load()
        return [n for n in self._entries if fnmatch.fnmatchcase(n, pattern)]

    def items(self) -> list[tuple[str, T]]:
        self.load()
        return list(self._entries.items())

    def origin(self, name: str) -> str:
        """Where entry ``name`` comes from: ``bmbench``, or the plug-in distribution."""
        self.load()
        return self._origins.get(self._aliases.get(name, name), "bmbench")

    def aliases(self) -> dict[str, str]:
        self.load()
        return dict(self._aliases)

    def describe(self) -> list[tuple[str, str]]:
        """``(name, one line)`` for every entry: its own ``title`` or ``description``, or for
        a plain function its docstring's first sentence (never an instance's class doc)."""
        return [(n, describe_entry(e)) for n, e in self.items()]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def load(self) -> None:
        """Import the built-in modules and the installed plug-ins (once)."""
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtins:
            importlib.import_module(module)
        for ep in _entry_points(self.group):
            before = set(self._entries)
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break bmbench
                log.warning("plug-in %s = %s (entry point group %s) failed to load and is ignored: %s",
                            ep.name, ep.value, self.group, exc)
                continue
            if ":" in ep.value and ep.name not in self._entries:
                self.register(ep.name, obj)
            dist = getattr(ep, "dist", None)
            for name in set(self._entries) - before:
                self._origins[name] = f"{dist.name} {dist.version}" if dist is not None else ep.value


def _entry_points(group: str):
    from importlib.metadata import entry_points

    return sorted(entry_points(group=group), key=lambda ep: ep.name)

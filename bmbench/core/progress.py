"""Progress bars on stderr for long steps; silent with ``--quiet``."""

from __future__ import annotations

import contextlib
import sys

import click

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


class _Silent:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def progress(total: int, label: str):
    """Yield an object with ``update(n)``; draws a bar on stderr unless quiet."""
    if _quiet or total <= 0:
        yield _Silent()
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True,
                           show_eta=True, width=30) as bar:
        yield bar


@contextlib.contextmanager
def silenced():
    """No bars inside (a caller's own bar already shows the whole job's progress)."""
    global _quiet
    before, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = before

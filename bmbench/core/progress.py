"""Progress of long steps: a bar on a terminal, a bar in a Jupyter or Colab notebook,
plain lines elsewhere (a log file, CI); silent with ``--quiet``."""

from __future__ import annotations

import contextlib
import sys
import time

import click

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def configure_output(quiet: bool) -> None:
    """bmbench's log lines (``bmbench: ...``) and progress on stderr; with ``quiet`` only
    warnings and errors."""
    import logging

    set_quiet(quiet)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bmbench: %(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    root = logging.getLogger("bmbench")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


class _Silent:
    def update(self, n: int) -> None:
        pass


#: A bar on a non-terminal (a log file, CI) prints a line at most this often, seconds.
LOG_EVERY_S = 30.0


@contextlib.contextmanager
def progress(total: int, label: str):
    """Yield an object with ``update(n)``; on a terminal a bar on stderr with the count, the
    rate and the ETA; in a notebook an HTML bar with the same words (:class:`_NotebookBar`);
    elsewhere (a log file) a line every :data:`LOG_EVERY_S` s and at the end; nothing when quiet."""
    if _quiet or total <= 0:
        yield _Silent()
        return
    if in_notebook():
        bar = _NotebookBar(total, label)
        yield bar
        bar.finish()
        return
    if not sys.stderr.isatty():
        lines = _Lines(total, label)
        yield lines
        lines.finish()
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True,
                           width=30, item_show_func=lambda text: text) as bar:
        yield _Rated(bar)


class _Rated:
    """``update(n)`` that shows the rate beside click's count and ETA."""

    def __init__(self, bar):
        self.bar, self.done, self.t0 = bar, 0, time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(n, current_item=f"{rate:,.1f}/s")


class _Lines:
    """Progress as log lines: ``label: 120/400 (30%), 41.2/s, ETA 7 s``."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done = total, label, 0
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= LOG_EVERY_S and self.done < self.total:
            self.last = now
            click.echo(self.text(now), file=sys.stderr)

    def text(self, now: float) -> str:
        rate = self.done / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"{self.label}: {self.done:,}/{self.total:,} ({self.done / self.total:.0%}), {rate:,.1f}/s"
                + (f", ETA {eta:,.0f} s" if self.done < self.total and eta == eta else f", {now - self.t0:,.1f} s"))

    def finish(self) -> None:
        if self.done:
            click.echo(self.text(time.perf_counter()), file=sys.stderr)


def in_notebook() -> bool:
    """True in a Jupyter or Colab kernel: ipykernel imported and a kernel running."""
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    shell = sys.modules["IPython"].get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _NotebookBar(_Lines):
    """A bar in the notebook's output, redrawn in place at most every :data:`REDRAW_S` s.
    Plain HTML (``<progress>``) rather than a widget: it needs no ipywidgets, works in Colab,
    and a saved notebook (and the documentation built from one) keeps its last state."""

    REDRAW_S = 0.5

    def __init__(self, total: int, label: str):
        from IPython.display import display

        super().__init__(total, label)
        self.handle = display(self._bundle(self.t0), raw=True, display_id=True)

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.REDRAW_S and self.done < self.total:
            self.last = now
            self.handle.update(self._bundle(now), raw=True)

    def finish(self) -> None:
        self.handle.update(self._bundle(time.perf_counter()), raw=True)

    def _bundle(self, now: float) -> dict:
        import html

        text = self.text(now)
        return {"text/plain": text,
                "text/html": f'<div><progress value="{self.done}" max="{self.total}" style="width: 18em"></progress> '
                             f"<code>{html.escape(text)}</code></div>"}


@contextlib.contextmanager
def silenced():
    """No bars inside (a caller's own bar already shows the whole job's progress)."""
    global _quiet
    before, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = before

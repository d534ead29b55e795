"""Remember a Ctrl-C even where Python swallows it, so nothing is stored after one.

Python raises KeyboardInterrupt wherever the main thread happens to be; inside a ``__del__``,
a weakref or ctypes callback (XGBoost's data iterators) or a library's broad ``except``,
it is printed as "Exception ignored" or dropped and the work goes on. Inside
:func:`watch`, SIGINT also sets a flag that :func:`check` turns back into
KeyboardInterrupt, and the run store calls it before a run becomes visible.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_requested = False


def _on_sigint(signum, frame) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def requested() -> bool:
    """True once SIGINT arrived inside :func:`watch`."""
    return _requested


def check() -> None:
    """Raise KeyboardInterrupt if SIGINT arrived inside :func:`watch`, even if it was swallowed."""
    if _requested:
        raise KeyboardInterrupt


@contextmanager
def watch() -> Iterator[None]:
    """Record SIGINT for :func:`check` while the block runs (main thread only; elsewhere,
    and where a non-default handler is installed, a no-op). The previous handler and a
    clear flag are restored on exit, so one command's interrupt never leaks into the next
    (commands invoked in-process by tests)."""
    global _requested
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _requested = False
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _requested = False

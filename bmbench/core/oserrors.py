"""One line for an operating-system error no layer turned into a :class:`BmbenchError`:
a disk that is full, a read-only file system, a folder without permission.

The CLI uses :func:`describe` as its last net, so such an error is ``Error: <file>: <what>;
<fix>`` and exit code 2, never a traceback. Whatever was being written went to a temporary
sibling (:mod:`bmbench.core.atomic`) and is removed, so no partial run or cache entry is left.
"""

from __future__ import annotations

import errno

#: Errors of writing, with the fix a user can apply.
WRITE_FIXES = {
    errno.ENOSPC: "free disk space or write elsewhere (--results-dir, $BMBENCH_RESULTS, $BMBENCH_CACHE)",
    errno.EDQUOT: "free space in your quota or write elsewhere (--results-dir, $BMBENCH_RESULTS, $BMBENCH_CACHE)",
    errno.EFBIG: "the file system refuses files this large; write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere (--results-dir, $BMBENCH_RESULTS, $BMBENCH_CACHE)",
    errno.EACCES: "check the folder's permissions or write elsewhere",
    errno.EPERM: "check the folder's permissions or write elsewhere",
    errno.EIO: "the device reported an input/output error; check the disk",
}


def describe(exc: OSError) -> str:
    """``<file>: <strerror>; <fix>`` (one line) for ``exc``."""
    where = exc.filename if exc.filename is not None else "bmbench"
    what = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    fix = WRITE_FIXES.get(exc.errno)
    text = f"{where}: {what}"
    if exc.filename2 is not None:
        text = f"{where} -> {exc.filename2}: {what}"
    return f"{text}; {fix}" if fix else text

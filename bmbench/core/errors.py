"""The one exception type users see: a single line naming the file or key and the fix."""


class BmbenchError(Exception):
    """A user-facing error. The CLI prints ``Error: <message>`` and exits non-zero.

    Messages are one line and name what is wrong (file, key, value) and how to fix it.
    """

    def _render_traceback_(self) -> list[str]:
        # IPython and Jupyter show this instead of the traceback: a user's mistake is one line
        return [f"{type(self).__name__}: {one_line(str(self))}"]


def one_line(text: str) -> str:
    """``text`` with line breaks and other invisible characters (from a key, a label or a
    file name in the message) shown as escapes, so an error stays one readable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class RecipeError(BmbenchError):
    """A recipe file or override is invalid."""


class DatasetError(BmbenchError):
    """A data set root, layout, manifest or image cannot be used."""


class StoreError(BmbenchError):
    """The results store cannot be read or written."""

"""The one exception type users see: a single line naming the file or key and the fix."""


class BmbenchError(Exception):
    """A user-facing error. The CLI prints ``Error: <message>`` and exits non-zero.

    Messages are one line and name what is wrong (file, key, value) and how to fix it.
    """


class RecipeError(BmbenchError):
    """A recipe file or override is invalid."""


class DatasetError(BmbenchError):
    """A data set root, layout, manifest or image cannot be used."""


class StoreError(BmbenchError):
    """The results store cannot be read or written."""

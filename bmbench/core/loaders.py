"""One loader per kind of model file: the only place bmbench reads a model back from disk.

Run folders are shared and caches live on shared disks, so every model file is untrusted
input. Each loader checks what it reads before handing it to the library that builds the
model, and turns any damage (missing, truncated, bit-flipped, crafted) into one
:class:`~bmbench.core.untrusted.DamagedFile` line naming the file:

* :func:`load_skops`: scikit-learn models. Every type the file would build is read from
  its ``schema.json`` (no import, nothing constructed) and must be one of the exact type
  names the caller trusts (the classifier's declared list, see
  :func:`bmbench.models.classifiers.sklearn_classifier`); skops then loads it trusting
  exactly those. No module prefix is ever trusted.
* :func:`load_xgboost`: XGBoost's own JSON, parsed and checked for its top-level keys first.
* :func:`load_keras`: ``.keras`` files, in safe mode (no Lambda layers, no custom code).
* :func:`load_npz`: ``.npz`` arrays without pickle, each key's dtype, shape and finiteness
  checked, sizes checked before anything is decompressed.
* :func:`read_model_json`: the JSON beside a model (``model.json``, ``classical.json``...),
  through :func:`~bmbench.core.untrusted.read_json` with a shape declared in
  :mod:`bmbench.core.shapes`.

Heavy libraries are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from . import shapes
from .untrusted import DamagedFile, MAX_JSON_BYTES, damaged, read_json, read_json_bytes

#: What to do about a damaged model file in a run folder.
RERUN = "the run folder was damaged or edited; restore it or rerun its recipe"

#: Member of a skops zip that describes every object in it.
SKOPS_SCHEMA = "schema.json"


def read_model_json(path: str | os.PathLike, spec, fix: str = RERUN):
    """The JSON beside a model (``model.json``, ``classical.json``...), checked against
    ``spec`` (:mod:`bmbench.core.shapes`)."""
    return read_json(path, shapes.shape(spec), fix)


# --- skops ------------------------------------------------------------------------------------

def skops_types(path: str | os.PathLike, fix: str = RERUN) -> set[str]:
    """Every type (``module.name``) the skops file ``path`` would build or look up, read from
    its schema without importing or constructing anything."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(SKOPS_SCHEMA)
            if info.file_size > MAX_JSON_BYTES:
                raise damaged(path, f"its {SKOPS_SCHEMA} is larger than {MAX_JSON_BYTES >> 20} MiB", fix)
            schema = json.loads(archive.read(info))
    except FileNotFoundError:
        raise damaged(path, "missing", fix) from None
    except KeyError:
        raise damaged(path, f"not a skops file (no {SKOPS_SCHEMA})", fix) from None
    except (OSError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, RecursionError) as exc:
        raise damaged(path, f"truncated or not a skops file ({_first_line(exc)})", fix) from None
    except ValueError as exc:
        raise damaged(path, f"its {SKOPS_SCHEMA} is not valid JSON ({_first_line(exc)})", fix) from None
    found: set[str] = set()
    stack = [schema]
    while stack:  # iterative: a crafted schema may nest deeper than Python recurses
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node or "__class__" in node or "__module__" in node:
                module, name = node.get("__module__"), node.get("__class__")
                if not (isinstance(module, str) and isinstance(name, str)):
                    raise damaged(path, "an object in it has no valid __module__/__class__", fix)
                found.add(f"{module}.{name}")
                if node.get("__loader__") == "MethodNode":  # a bound method: its name is a type too
                    found.add(f"{module}.{name}.{(node.get('content') or {}).get('func')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def check_skops(path: str | os.PathLike, trusted: Iterable[str], fix: str = RERUN) -> None:
    """Refuse (one line naming the file and the first foreign type) a skops file holding
    any type not in ``trusted``; nothing in it is imported or built."""
    foreign = sorted(skops_types(path, fix) - frozenset(trusted))
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise damaged(path, f"holds the type {foreign[0]}{more}, which bmbench never saves there; "
                            "refusing to load it (a crafted or foreign file)", fix)


def load_skops(path: str | os.PathLike, trusted: Iterable[str], fix: str = RERUN):
    """The object in the skops file ``path``, when every type in it is one of the exact
    names in ``trusted`` (:func:`check_skops`); skops then trusts exactly those."""
    path = Path(path)
    allowed = frozenset(trusted)
    check_skops(path, allowed, fix)
    import skops.io as sio

    try:
        return sio.load(path, trusted=sorted(allowed))
    except DamagedFile:
        raise
    except Exception as exc:  # whatever a damaged but allowed file makes skops raise
        raise damaged(path, f"cannot be loaded ({type(exc).__name__}: {_first_line(exc)})", fix) from None


# --- XGBoost ----------------------------------------------------------------------------------

#: Top-level keys of XGBoost's JSON model format.
XGBOOST_KEYS = ("learner", "version")


def _xgboost_shape(value) -> str | None:
    if not isinstance(value, dict):
        return f"expected XGBoost's JSON model (an object), found {type(value).__name__}"
    missing = [k for k in XGBOOST_KEYS if k not in value]
    if missing:
        return f"not an XGBoost model (lacks '{missing[0]}')"
    learner = value["learner"]
    if not isinstance(learner, dict) or not isinstance(learner.get("gradient_booster"), dict):
        return "not an XGBoost model (its learner has no gradient_booster)"
    return None


def load_xgboost(path: str | os.PathLike, fix: str = RERUN):
    """The ``xgboost.XGBClassifier`` saved in XGBoost's own JSON at ``path``: the bytes are
    read once, checked as JSON with XGBoost's top-level keys, and those same bytes loaded."""
    raw, _ = read_json_bytes(path, _xgboost_shape, fix)
    from xgboost import XGBClassifier

    clf = XGBClassifier()
    try:
        clf.load_model(bytearray(raw))
        clf.get_booster()
    except Exception as exc:  # XGBoostError, ValueError, ... : the library refused the content
        raise damaged(path, f"XGBoost cannot load it ({_first_line(exc)})", fix) from None
    return clf


# --- Keras ------------------------------------------------------------------------------------

def load_keras(path: str | os.PathLike, fix: str = RERUN):
    """The ``keras.Model`` in the ``.keras`` file ``path``, loaded in safe mode (no Lambda
    layers or other code) and uncompiled."""
    path = Path(path)
    if not path.is_file():
        raise damaged(path, "missing", fix)
    if not zipfile.is_zipfile(path):
        raise damaged(path, "truncated or not a .keras file (not a zip archive)", fix)
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many kinds for damaged or refused content
        raise damaged(path, f"Keras cannot load it ({type(exc).__name__}: {_first_line(exc)})", fix) from None


# --- npz --------------------------------------------------------------------------------------

def load_npz(path: str | os.PathLike, spec: dict[str, tuple[str, tuple[int, ...]]],
             fix: str = RERUN) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` file ``path``: exactly the keys of ``spec``, each
    ``key: (dtype kinds, shape)`` (e.g. ``("f", (4, 12))``) and finite; no pickle. Sizes
    are checked before anything is decompressed."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n[:-4]: archive.getinfo(n) for n in archive.namelist() if n.endswith(".npy")}
            if set(members) != set(spec):
                raise damaged(path, f"holds the arrays {sorted(members)}, expected {sorted(spec)}", fix)
            for key, (_, shape) in spec.items():
                limit = 8 * int(np.prod(shape, dtype=np.int64)) + 4096  # float64 and the .npy header
                if members[key].file_size > limit:
                    raise damaged(path, f"array '{key}' is larger than its shape {shape} allows", fix)
        out = {}
        with np.load(path, allow_pickle=False) as z:
            for key, (kinds, shape) in spec.items():
                array = z[key]
                if array.dtype.kind not in kinds or array.shape != tuple(shape):
                    raise damaged(path, f"array '{key}' is {array.dtype} {array.shape}, expected "
                                        f"shape {tuple(shape)}", fix)
                if array.dtype.kind in "fc" and not np.isfinite(array).all():
                    raise damaged(path, f"array '{key}' holds NaN or infinite values", fix)
                out[key] = array
        return out
    except DamagedFile:
        raise
    except FileNotFoundError:
        raise damaged(path, "missing", fix) from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise damaged(path, f"truncated, or not an npz file of plain arrays ({_first_line(exc)})", fix) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]

"""``run`` encoders: the network of a stored ``cnn`` or ``transfer`` run minus its head
(everything up to its global pooling), for in-domain pretraining: train on one data set,
then fine-tune (``transfer``) or embed (``hybrid``) on another.

``run`` is a run folder (with ``run.json``), a run id (or unique prefix), or a recipe name
(its newest run) in ``results`` (default: ``--results-dir``'s default, ``$BMBENCH_RESULTS``
or ``./results``). The run's model is loaded with Keras's safe mode; its input size and
preprocessing come with it. ``model.weights: none`` gives its architecture randomly
initialised from the seed (the from-scratch baseline of the same network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ...config.schema import option
from ...core.errors import BmbenchError
from . import ENCODERS, file_stamp, SCRATCH, Encoder, EncoderKind, content_digest

#: Families whose runs store a Keras network bmbench can cut below its head.
NETWORK_FAMILIES = ("cnn", "transfer")


@dataclass(frozen=True)
class RunOptions:
    run: str = option(doc="a run folder, run id or recipe name (its newest run)")
    results: Optional[str] = option(None, doc="results folder to look the run up in (default: "
                                              "$BMBENCH_RESULTS or ./results)")

    def label(self) -> str:
        return f"run-{Path(self.run).name}"

    def stamp(self) -> tuple:
        model = Path(self.run) / "model"
        return file_stamp(*sorted(model.glob("*"))) if model.is_dir() else (self.run, self.results)


def find_run(ref: str, results: str | None) -> Path:
    """The folder of run ``ref`` (see the module doc), or a one-line error."""
    from ...config.locations import results_dir

    if (Path(ref) / "run.json").is_file():
        return Path(ref)
    store = results_dir(results) / "runs"
    runs = sorted(p for p in store.glob("[!.]*") if (p / "run.json").is_file()) if store.is_dir() else []
    hits = [p for p in runs if p.name == ref] or [p for p in runs if p.name.startswith(ref)] \
        or [p for p in runs if p.name.split("-", 1)[-1].rsplit("-", 1)[0] == ref]
    if not hits:
        raise BmbenchError(f"model.backbone.run: no run '{ref}' in {store.resolve()} (nor a run folder "
                           "of that name); run the pretraining recipe first, or give the run's folder")
    return hits[-1]  # ids start with their UTC timestamp: the newest last


def load_run_network(folder: Path):
    """``(keras.Model up to the pooling, model.json facts)`` of a stored run."""
    from ..keras_model import KerasClassifier

    where = f"model.backbone.run: {folder}"
    try:
        info = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        raise BmbenchError(f"{where}: run.json is missing or damaged; give a complete run") from None
    family = info.get("family")
    if family not in NETWORK_FAMILIES:
        raise BmbenchError(f"{where} is a {family} run, which has no network; give a cnn or transfer run")
    if int(info.get("n_folds", 1)) != 1:
        raise BmbenchError(f"{where} has {info.get('n_folds')} folds (one network each); give a run "
                           "with one split (split.folds: 1)")
    model_dir = folder / "model"
    try:
        trained = KerasClassifier.load(model_dir)
    except BmbenchError:
        raise
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BmbenchError(f"{where}: its model cannot be loaded in safe mode ({reason})") from None
    import keras

    model = trained.full_model()
    try:
        pool = model.get_layer("pool")
    except ValueError:
        raise BmbenchError(f"{where}: its network has no 'pool' layer to cut below; give a run "
                           "trained by this bmbench's cnn or transfer family") from None
    body = keras.Model(model.inputs, pool.input, name="pretrained_run")
    return body, trained


def _fingerprint(model_dir: Path) -> str:
    parts = [content_digest(p) for p in sorted(model_dir.glob("*.keras"))]
    parts.append(content_digest(model_dir / "model.json"))
    return ":".join(p[:16] for p in parts)


class RunEncoder(Encoder):
    key_name = "run"

    def __init__(self, options: RunOptions):
        self.folder = find_run(options.run, options.results)
        self.name = f"run-{self.folder.name}"
        body, trained = load_run_network(self.folder)
        self.input_size = int(trained.image_size)
        self.preprocess_name = trained.backbone
        self.digest = _fingerprint(self.folder / "model")

    def identity(self, weights: str, seed: int) -> str:
        base = f"run:{self.digest}"
        return f"{base}:none:seed={seed}" if weights == SCRATCH else base

    def check_size(self, size: int) -> None:
        if size != self.input_size:
            raise BmbenchError(f"dataset.image_size: {size} px, but run {self.folder.name} was trained "
                               f"on {self.input_size} px images; set dataset.image_size to {self.input_size}")

    def build(self, weights: str, size: int, seed: int):
        from .keras_file import scratch_copy

        body, _ = load_run_network(self.folder)
        if _fingerprint(self.folder / "model") != self.digest:
            raise BmbenchError(f"model.backbone.run: {self.folder} changed while the run used it; rerun")
        return scratch_copy(body, seed) if weights == SCRATCH else body


ENCODERS.register("run", EncoderKind(
    "run", "the network of a stored cnn or transfer run, below its head (in-domain pretraining)",
    RunOptions, RunEncoder))

"""One training stage of a Keras classifier: compile, fit with early stopping, log history.

Every stage uses Adam on sparse categorical cross-entropy (weighted per sample, see
:func:`bmbench.models.classifiers.class_weights`), stops early when the validation loss
has not improved for ``train.patience`` epochs, halves the learning rate after
``max(1, patience // 2)`` epochs without improvement, and ends with the weights of the
best epoch. Without a validation split the training loss is monitored instead. Each
epoch appends a row to ``history.csv`` in the run folder:
``fold, stage, epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds``.
Accuracy here is Keras's running training metric; scores are computed only by
:mod:`bmbench.metrics.scores`.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bmbench.run")

#: BatchNorm momentum for layers trained from scratch. Keras's default (0.99) averages the
#: batch statistics over ~100 steps; data sets of a few thousand cells give only tens of
#: steps per epoch while the weights still move fast, so the moving statistics trail far
#: behind and inference-mode predictions collapse to one class. 0.9 tracks them.
SCRATCH_BN_MOMENTUM = 0.9

HISTORY_COLUMNS = ("fold", "stage", "epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                   "learning_rate", "seconds")


@dataclass(frozen=True)
class StageResult:
    """stage: its name; epochs: epochs run; best_epoch: 1-based epoch whose weights were
    kept; best_loss: the monitored loss there; seconds: wall time; images_per_s: training
    throughput (images seen / seconds, first epoch left out when there are more)."""

    stage: str
    epochs: int
    best_epoch: int
    best_loss: float
    seconds: float
    images_per_s: float

    def as_dict(self) -> dict:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch,
                "best_loss": round(self.best_loss, 5), "seconds": round(self.seconds, 2),
                "train_images_per_s": round(self.images_per_s, 1)}


def compile_model(model, learning_rate: float, devices, steps_per_execution: int = 1) -> None:
    """Adam at ``learning_rate`` on sparse categorical cross-entropy (call in ``devices.scope()``).

    ``steps_per_execution`` batches run per call into the compiled function: for tiny
    models (a head on embeddings) Python's per-step overhead otherwise dominates."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=devices.jit_compile, steps_per_execution=steps_per_execution)


def fit_stage(model, train_data, steps: int, val_data, *, stage: str, epochs: int,
              patience: int, batch_size: int, ctx, later_epochs: int = 0) -> StageResult:
    """Fit a compiled ``model`` for at most ``epochs`` epochs of ``steps`` batches of
    ``train_data`` (``(x, y, sample_weight)`` batches), validating on ``val_data`` (``(x, y)``
    batches, or None). Restores the best epoch's weights and appends to ``history.csv``.
    ``later_epochs``: the most epochs of this fold's stages still to come, for the run's ETA."""
    import keras

    monitor = "val_loss" if val_data is not None else "loss"
    plan = RunPlan(epochs, later_epochs, getattr(ctx, "fold", 0), getattr(ctx, "n_folds", 1))
    epoch_log = _epoch_log(stage, plan, getattr(ctx, "on_epoch", None))
    stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=patience,
                                            restore_best_weights=True)
    callbacks = [stopper,
                 keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5,
                                                   patience=max(1, patience // 2), min_lr=1e-7),
                 epoch_log]
    t0 = time.perf_counter()
    model.fit(train_data, steps_per_epoch=steps, epochs=epochs, validation_data=val_data,
              callbacks=callbacks, shuffle=False, verbose=0)
    seconds = time.perf_counter() - t0
    _append_history(ctx, stage, epoch_log.rows)
    losses = [row[monitor] for row in epoch_log.rows]
    best = int(min(range(len(losses)), key=lambda i: (math.isnan(losses[i]), losses[i])))
    log.info("%s: %s", stage, kept_text(len(losses), epochs, best + 1, monitor))
    timed = epoch_log.rows[1:] or epoch_log.rows  # the first epoch includes tracing
    train_seconds = sum(row["seconds"] for row in timed)
    return StageResult(stage, len(epoch_log.rows), best + 1, float(losses[best]), seconds,
                       len(timed) * steps * batch_size / max(train_seconds, 1e-9))


def kept_text(ran: int, epochs: int, kept: int, monitor: str) -> str:
    """``stopped early at epoch 38/40; kept epoch 33 (best val loss)``, or ``ran all 40
    epochs; kept epoch 40 (best val loss)``."""
    how = f"stopped early at epoch {ran}/{epochs}" if ran < epochs else f"ran all {epochs} epochs"
    return f"{how}; kept epoch {kept} (best {monitor.replace('_', ' ')})"


@dataclass(frozen=True)
class RunPlan:
    """The most epochs a run may still train: ``epochs`` of this stage, ``later_epochs`` of
    this fold's next stages, in fold ``fold`` (0-based) of ``n_folds``."""

    epochs: int
    later_epochs: int = 0
    fold: int = 0
    n_folds: int = 1

    def eta_text(self, done: int, epoch_seconds: float) -> str:
        """``at most 1.5 min left in this stage, 6.2 min in the run``: the epochs still allowed
        (early stopping may end sooner) at ``epoch_seconds`` each."""
        stage = (self.epochs - done) * epoch_seconds
        run = stage + (self.later_epochs + (self.n_folds - self.fold - 1) * (self.epochs + self.later_epochs)) \
            * epoch_seconds
        if run <= stage:
            return f"at most {duration_text(stage)} left in the run"
        return f"at most {duration_text(stage)} left in this stage, {duration_text(run)} in the run"


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _epoch_log(stage: str, plan: RunPlan, hook=None):
    """A Keras callback keeping one history row and logging one line per epoch, then calling
    ``hook(stage, epoch, row)`` (a study's pruning; it may raise to stop training). Built on
    demand so importing this module does not import Keras."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"stage": stage, "epoch": epoch + 1, "learning_rate": self.lr,
                   "seconds": time.perf_counter() - self.t0}
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                row[key] = float(logs[key]) if key in logs else math.nan
            self.rows.append(row)
            timed = [r["seconds"] for r in self.rows[1:]] or [row["seconds"]]  # the first epoch traces
            log.info("%s epoch %d/%d: %s, lr %.2g (%.1f s; %s)", stage, epoch + 1, plan.epochs,
                     epoch_text(row), self.lr, row["seconds"], plan.eta_text(epoch + 1, sum(timed) / len(timed)))
            if hook is not None:
                hook(stage, epoch + 1, row)

    return EpochLog()


def epoch_text(row: dict) -> str:
    """``loss 0.5123, accuracy 0.8120, val_loss 0.6011, val_accuracy 0.7900`` (what is known)."""
    parts = [f"{key} {row[key]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
             if key in row and not math.isnan(row[key])]
    return ", ".join(parts)


def _append_history(ctx, stage: str, rows: list[dict]) -> None:
    if ctx.run_dir is None or not rows:
        return
    path = Path(ctx.run_dir) / "history.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({"fold": ctx.fold, **row})

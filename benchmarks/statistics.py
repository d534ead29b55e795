"""Statistics: stratified bootstrap CIs of every headline metric for 10,000 test predictions
(8 classes) with 1,000 resamples, against the loop a user would otherwise write (resample
indices, call scikit-learn's metric functions once per resample). Target: under 1 s.

The scikit-learn loop is timed on 50 resamples and scaled to 1,000 (it is linear in them).
"""

from __future__ import annotations

import time

import numpy as np

from .common import machine, write_section

N, K, RESAMPLES, LOOP_RESAMPLES = 10_000, 8, 1_000, 50


def _predictions(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N)
    logits = rng.normal(size=(N, K))
    logits[np.arange(N), y] += 1.2
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def bmbench_seconds(y, p, repeats: int = 5) -> float:
    from bmbench.metrics.bootstrap import bootstrap_ci

    classes = [str(i) for i in range(K)]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bootstrap_ci(y, p, classes, n_resamples=RESAMPLES)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def sklearn_loop_seconds(y, p) -> float:
    from sklearn import metrics as m

    from bmbench.metrics.bootstrap import stratified_indices

    idx = stratified_indices(y, LOOP_RESAMPLES, 0)
    labels = np.arange(K)
    t0 = time.perf_counter()
    for rows in idx:
        yt, pp = y[rows], p[rows]
        yp = pp.argmax(axis=1)
        m.accuracy_score(yt, yp)
        m.balanced_accuracy_score(yt, yp)
        m.f1_score(yt, yp, average="macro")
        m.f1_score(yt, yp, average="weighted")
        m.precision_score(yt, yp, average="macro", zero_division=0)
        m.recall_score(yt, yp, average="macro", zero_division=0)
        m.matthews_corrcoef(yt, yp)
        m.cohen_kappa_score(yt, yp)
        m.roc_auc_score(yt, pp, multi_class="ovr", average="macro", labels=labels)
        m.log_loss(yt, pp, labels=labels)
    return (time.perf_counter() - t0) * RESAMPLES / LOOP_RESAMPLES


def run(argv: list[str] | None = None) -> str:
    y, p = _predictions()
    ours = bmbench_seconds(y, p)
    loop = sklearn_loop_seconds(y, p)
    body = (f"Machine: {machine()}\n\n{N:,} predictions, {K} classes, {RESAMPLES:,} stratified "
            "resamples, every headline metric (accuracy, balanced accuracy, macro/weighted F1, "
            "macro precision/recall, MCC, kappa, ROC-AUC, log loss, ECE, Brier).\n\n"
            "| method | seconds | ratio |\n|---|---|---|\n"
            f"| bmbench `bootstrap_ci` (median of 5) | {ours:.2f} | - |\n"
            f"| scikit-learn metric functions in a Python loop (no ECE/Brier; {LOOP_RESAMPLES} "
            f"resamples scaled to {RESAMPLES:,}) | {loop:.1f} | bmbench **{loop / ours:.0f}x** faster |\n\n"
            f"bmbench: **{ours:.2f} s** (target < 1 s).")
    write_section("Statistics: bootstrap intervals", body)
    return body

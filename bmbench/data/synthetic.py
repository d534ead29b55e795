"""Deterministic synthetic blood-smear crops: the built-in demo and test data set.

Each image is a square RGB crop of a stained smear: a pale pinkish background, several
red blood cells (pink discs with a paler centre, some cut by the border, some touching
the white cell) and ONE white cell near the centre whose class shows in its morphology:

* ``blast``: large cell, large round nucleus (N:C area ~0.7-0.85), fine chromatin,
  maybe 1-2 faint nucleoli, scant blue cytoplasm.
* ``lymphocyte``: small cell (about red-cell size), small very dark clumped nucleus,
  very scant pale-blue cytoplasm.
* ``monocyte``: large cell, kidney-shaped (indented) nucleus with lighter lacy
  chromatin, ample grey-blue cytoplasm, maybe a few vacuoles.
* ``neutrophil``: medium cell, 3-5 nuclear lobes joined by thin chromatin strands,
  pale pink-lilac granular cytoplasm.

Images are drawn with an optical-density model (``I = white * exp(-OD)``), then get a
per-image stain shift (hue, saturation, intensity), an illumination gradient, a slight
Gaussian blur and signal-dependent noise. All lengths are in pixels of the output image;
constants are given for a 128 px crop and scale with ``size``.

Neutrophil lobes are built so that a morphological opening with a disk of radius
``r`` for ``bridge <= r <= bridge + 1`` (``bridge = max(1, round(size / 64))`` px, the
strand width) splits the nucleus mask into exactly ``lobes`` components, while the mask
itself is one 8-connected component. Lobes have a minimum size in px, so below ~64 px
neutrophils are relatively larger and at 32-40 px may touch the border.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import pathlib
import shutil
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from scipy.special import ndtri

from ..core.atomic import temporary_sibling
from ..core.hashing import file_sha256

log = logging.getLogger(__name__)

SYNTHETIC_CLASSES: tuple[str, ...] = ("blast", "lymphocyte", "monocyte", "neutrophil")

#: Bump when the drawing changes, so cached data sets are regenerated.
GENERATOR_VERSION = 1

_MARKER = ".complete"
#: ``{relative path: [size, sha256]}`` of every generated file, written before the marker:
#: the marker alone would trust a folder emptied or a file replaced since.
_FILES = ".files.json"
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_REF = 128.0  # crop size at which the pixel constants below are given


def _od(rgb: Sequence[float]) -> np.ndarray:
    """Optical density (3,) float32 of an RGB colour (0-255) seen on a white (255) field."""
    return (-np.log(np.asarray(rgb, np.float64) / 255.0)).astype(np.float32)


_BG_OD = _od((244, 234, 237))
_RBC_OD = _od((228, 148, 160))
_NUC_OD = _od((112, 62, 152))

# Per class: cell radius at 128 px, cytoplasm colour, nucleus density (multiplies
# _NUC_OD), chromatin grain (noise blur sigma, px at 128) and clump contrast.
_STYLE = {
    "blast": dict(radius=(21.0, 32.0), cyto=(158, 172, 220), dens=0.82, grain=0.7, clump=0.10),
    "lymphocyte": dict(radius=(13.5, 19.0), cyto=(160, 188, 232), dens=1.30, grain=1.8, clump=0.32),
    "monocyte": dict(radius=(25.0, 35.0), cyto=(182, 178, 208), dens=0.72, grain=1.1, clump=0.38),
    "neutrophil": dict(radius=(18.0, 24.0), cyto=(228, 200, 218), dens=1.10, grain=1.3, clump=0.22),
}


@dataclass(frozen=True)
class SyntheticCell:
    """One rendered crop with its ground truth.

    image: (size, size, 3) uint8 RGB. nucleus_mask / cell_mask: (size, size) bool; the
    cell mask (nucleus + cytoplasm of the white cell) contains the nucleus mask.
    lobes: nucleus lobes drawn (3-5 for neutrophils, 1 otherwise).
    """

    image: np.ndarray
    nucleus_mask: np.ndarray
    cell_mask: np.ndarray
    label: str
    lobes: int


def _check_label(label: str) -> None:
    if label not in _STYLE:
        raise ValueError(f"unknown synthetic class {label!r}; valid: {', '.join(SYNTHETIC_CLASSES)}")


def _outline(c, a, b, angle, rng=None, wobble=0.0, dent=None, n=72) -> np.ndarray:
    """Closed polygon (n, 2) int32 in 1/16 px (cv2 shift=4) of an ellipse centred at c (x, y).

    a, b: semi-axes in px; angle: radians. wobble: amplitude of random harmonics 2-4
    (relative radius change). dent: (depth, local angle, width) of a Gaussian indentation.
    """
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
    if wobble:
        k = np.arange(2, 5)[:, None]
        amp = rng.uniform(0, wobble, 3)[:, None] / k
        r = r * (1 + (amp * np.cos(k * t + rng.uniform(0, 2 * np.pi, 3)[:, None])).sum(0))
    if dent is not None:
        depth, t0, width = dent
        d = np.angle(np.exp(1j * (t - t0)))
        r = r * (1 - depth * np.exp(-((d / width) ** 2)))
    xy = np.stack([c[0] + r * np.cos(t + angle), c[1] + r * np.sin(t + angle)], 1)
    return np.round(xy * (1 << _SHIFT)).astype(np.int32)


def _fill(size: int, polys) -> np.ndarray:
    """(size, size) bool mask of the union of polygons from _outline."""
    m = np.zeros((size, size), np.uint8)
    for p in polys:  # one call per polygon: a single call XORs overlaps
        cv2.fillPoly(m, [p.reshape(-1, 1, 2)], 1, cv2.LINE_8, _SHIFT)
    return m.astype(bool)


_GAUSS = ndtri((np.arange(1 << 16) + 0.5) / (1 << 16)).astype(np.float32)  # N(0,1) quantiles


def _gauss(rng, shape) -> np.ndarray:
    """float32 standard-normal samples of `shape` by table lookup (5x rng.standard_normal speed)."""
    idx = np.frombuffer(rng.bytes(2 * int(np.prod(shape))), "<u2")
    return np.take(_GAUSS, idx).reshape(shape)


def _noise(rng, size: int, sigma: float) -> np.ndarray:
    """(size, size) float32 Gaussian noise blurred with sigma px, rescaled to unit std."""
    n = cv2.GaussianBlur(_gauss(rng, (size, size)), (0, 0), sigma)
    return n / (n.std() + 1e-6)


def _round_nucleus(rng, size, c, ax, ang, k, off):
    """Ellipse nucleus: semi-axes k * ax, shifted by up to `off` * free space. Returns mask."""
    na, nb = k * ax[0], k * ax[1] * rng.uniform(0.92, 1.04)
    phi = rng.uniform(0, 2 * np.pi)
    d = off * rng.uniform(0.3, 1.0) * (ax[1] - nb)
    nc = (c[0] + d * np.cos(phi), c[1] + d * np.sin(phi))
    return _fill(size, [_outline(nc, na, nb, ang + rng.normal(0, 0.3), rng, 0.04)])


def _monocyte_nucleus(rng, size, c, ax):
    """Kidney nucleus: eccentric ellipse with a deep Gaussian dent on a long side."""
    phi = rng.uniform(0, 2 * np.pi)
    a = rng.uniform(0.70, 0.80) * ax[1]
    b = a * rng.uniform(0.66, 0.82)
    d = rng.uniform(0.12, 0.25) * ax[1]
    nc = (c[0] + d * np.cos(phi), c[1] + d * np.sin(phi))
    dent = (rng.uniform(0.55, 0.8), rng.choice([-1, 1]) * np.pi / 2, rng.uniform(0.7, 1.0))
    return _fill(size, [_outline(nc, a, b, phi + np.pi / 2, rng, 0.05, dent)])


def _bridge_px(size: int) -> int:
    """Width in px of the chromatin strands joining neutrophil lobes."""
    return max(1, int(round(size / 64)))


def _neutrophil_layout(rng, size, r_cell):
    """Lobe geometry: (n, centres (n, 2) px from the cell centre, a (n,), b (n,), angles (n,), cell radius).

    Lobes are ellipses (semi-axes a >= b, long axis roughly radial) on a jittered arc. The
    arc radius is the smallest that keeps every pair's projections onto the line joining
    their centres 2 * bridge + 2 px apart (so the lobes are that far apart), which with
    b >= bridge + 2 lets an opening with a disk of radius bridge..bridge+1 remove the
    strands but keep every lobe. The cell radius is raised to hold the lobes.
    """
    w, n = _bridge_px(size), int(rng.integers(3, 6))
    b = np.maximum(w + 2.0, rng.uniform(0.29, 0.34) * np.sqrt(3 / n) * r_cell * rng.uniform(0.85, 1.1, n))
    a = b * rng.uniform(1.1, 1.45, n)
    step = 2 * np.pi / (n + rng.uniform(0.3, 1.5))
    theta = rng.uniform(0, 2 * np.pi) + step * np.arange(n) + rng.normal(0, 0.06, n)
    u = np.stack([np.cos(theta), np.sin(theta) * rng.uniform(0.85, 1.0)], 1) * rng.uniform(0.9, 1.1, (n, 1))
    ang = theta + rng.normal(0, 0.3, n)
    e = np.stack([np.cos(ang), np.sin(ang)], 1)  # long-axis directions (n, 2)
    diff = u[:, None] - u[None]
    dist = np.linalg.norm(diff, axis=-1) + np.eye(n)
    d = diff / dist[..., None]
    along = np.einsum("ijk,ik->ij", d, e)  # cos between joining line and lobe i's long axis
    h = np.sqrt((a * a)[:, None] * along**2 + (b * b)[:, None] * (1 - along**2))  # lobe i along d
    need = (h + h.T + 2 * w + 2.0) / dist
    rho = max(rng.uniform(0.2, 0.3) * r_cell, need[~np.eye(n, dtype=bool)].max())
    centres = (u - u.mean(0)) * rho
    r_cell = max(r_cell, (np.linalg.norm(centres, axis=1) + a).max() + 1.0 + 0.04 * r_cell)
    return n, centres, a, b, ang, r_cell


def _neutrophil_nucleus(rng, size, c, layout):
    """Mask of the lobes (ellipses) joined in a chain by straight strands of _bridge_px."""
    n, centres, a, b, ang, _ = layout
    pts = centres + np.asarray(c)
    polys = [_outline(*args) for args in zip(pts, a, b, ang)]
    w = _bridge_px(size)
    if w == 1:  # 8-connected one-pixel strands
        m = _fill(size, polys).astype(np.uint8)
        q = np.round(pts * (1 << _SHIFT)).astype(np.int32)
        for i in range(n - 1):
            cv2.line(m, tuple(map(int, q[i])), tuple(map(int, q[i + 1])), 1, 1, cv2.LINE_8, _SHIFT)
        return m.astype(bool)
    t = pts[1:] - pts[:-1]
    nrm = np.stack([-t[:, 1], t[:, 0]], 1) / np.linalg.norm(t, axis=1, keepdims=True) * (w - 1) / 2
    quads = np.stack([pts[:-1] + nrm, pts[1:] + nrm, pts[1:] - nrm, pts[:-1] - nrm], 1)
    return _fill(size, polys + list(np.round(quads * (1 << _SHIFT)).astype(np.int32)))


def _red_cells(rng, size, sc, c, r_wbc) -> np.ndarray:
    """(size, size) float32 red-cell density: discs with soft rim and pale centre, summed."""
    n_cand = 100
    r = rng.uniform(12.0, 15.5, n_cand) * sc
    xy = rng.uniform(-0.05 * size, 1.05 * size, (n_cand, 2))
    ok = np.linalg.norm(xy - c, axis=1) >= r_wbc + r * rng.uniform(0.25, 0.9, n_cand)
    clash = np.linalg.norm(xy[:, None] - xy[None], axis=-1) < 1.55 * np.maximum(r[:, None], r[None])
    target, keep, blocked = int(rng.integers(7, 16)), [], ~ok
    for i in range(n_cand):  # greedy: accept a candidate unless it clashes with an accepted one
        if not blocked[i]:
            keep.append(i)
            blocked = blocked | clash[i]
            if len(keep) == target:
                break
    dens = np.zeros((size, size), np.float32)
    for i in keep:
        a, b = r[i], r[i] * rng.uniform(0.86, 1.0)
        x0, x1 = max(int(xy[i, 0] - a - 2), 0), min(int(xy[i, 0] + a + 3), size)
        y0, y1 = max(int(xy[i, 1] - a - 2), 0), min(int(xy[i, 1] + a + 3), size)
        if x0 >= x1 or y0 >= y1:
            continue
        ang = rng.uniform(0, np.pi)
        dx = np.arange(x0, x1, dtype=np.float32)[None] - xy[i, 0]
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - xy[i, 1]
        u, v = dx * np.cos(ang) + dy * np.sin(ang), -dx * np.sin(ang) + dy * np.cos(ang)
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        edge = np.clip((1 - rho) * a / 1.2, 0, 1)
        pallor = rng.uniform(0.35, 0.6)
        dens[y0:y1, x0:x1] += edge * (1 - pallor * np.exp(-((rho / 0.5) ** 2))) * rng.uniform(0.85, 1.1)
    return dens


def _stain_matrix(rng) -> np.ndarray:
    """(3, 3) per-image stain shift applied to OD: hue rotation about grey, saturation, intensity."""
    th = rng.normal(0, 0.18)
    u = np.full(3, 1 / np.sqrt(3))
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    rot = np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k
    s = rng.uniform(0.75, 1.25)
    sat = s * np.eye(3) + (1 - s) * np.full((3, 3), 1 / 3)
    return (rng.uniform(0.75, 1.25) * sat @ rot).astype(np.float32)


def render_cell(label: str, rng: np.random.Generator, size: int = 128) -> SyntheticCell:
    """Render one (size, size, 3) uint8 RGB crop of a white cell of class `label`.

    The white cell is centred within +-8% of `size`; all randomness comes from `rng`.
    Raises ValueError for an unknown label or size < 32.
    """
    _check_label(label)
    if size < 32:
        raise ValueError(f"size must be >= 32 px, got {size}")
    st, sc = _STYLE[label], size / _REF
    c = size / 2 + np.clip(rng.normal(0, 0.035 * size, 2), -0.08 * size, 0.08 * size)
    r = rng.uniform(*st["radius"]) * sc
    lobes, layout = 1, None
    if label == "neutrophil":
        layout = _neutrophil_layout(rng, size, r)
        lobes, r = layout[0], layout[5]
    ang = rng.uniform(0, np.pi)
    ax = (r * rng.uniform(1.0, 1.1), r * rng.uniform(0.9, 1.0))
    c = np.clip(c, min(ax[0] + 1, size / 2), max(size - ax[0] - 1, size / 2))  # keep it in frame
    cell = _fill(size, [_outline(c, ax[0], ax[1], ang, rng, 0.05)])
    if label == "blast":
        nuc = _round_nucleus(rng, size, c, ax, ang, rng.uniform(0.84, 0.91), 0.8)
    elif label == "lymphocyte":
        nuc = _round_nucleus(rng, size, c, ax, ang, rng.uniform(0.78, 0.88), 1.0)
    elif label == "monocyte":
        nuc = _monocyte_nucleus(rng, size, c, ax)
    else:
        nuc = _neutrophil_nucleus(rng, size, c, layout)
    cell |= nuc
    img = _compose(rng, size, sc, st, label, c, r, cell, nuc)
    return SyntheticCell(img, nuc, cell, label, lobes)


def _compose(rng, size, sc, st, label, c, r, cell, nuc) -> np.ndarray:
    """Optical-density composite of background, red cells, cytoplasm and nucleus -> uint8 RGB."""
    cell_f, nuc_f = cell.astype(np.float32), nuc.astype(np.float32)
    tex = 1 + st["clump"] * np.tanh(_noise(rng, size, st["grain"] * sc))
    nuc_d = nuc_f * tex * st["dens"] * rng.uniform(0.9, 1.1)
    cyto_d = (cell_f - nuc_f) * rng.uniform(0.85, 1.15)
    if label == "blast":
        nuc_d *= 1 - _nucleoli(rng, size, sc, nuc)
    elif label == "neutrophil":
        cyto_d *= 1 + 0.45 * _noise(rng, size, 0.6 * sc)
    elif label == "monocyte":
        cyto_d *= (1 + 0.12 * _noise(rng, size, 1.5 * sc)) * (1 - 0.8 * _vacuoles(rng, size, sc, cell & ~nuc))
    rbc = _red_cells(rng, size, sc, c, r) * (1 - 0.5 * cell_f)
    g = rng.normal(0, 0.05, 2)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    shade = -np.log(1 + g[0] * ramp[None, :] + g[1] * ramp[:, None])  # illumination gradient as OD
    dens = np.stack([np.ones_like(rbc), rbc, cyto_d, nuc_d, shade], -1).reshape(-1, 5)
    colours = np.stack([_BG_OD, _RBC_OD, _od(st["cyto"]), _NUC_OD]) @ _stain_matrix(rng).T
    od = dens @ np.vstack([colours, np.ones((1, 3), np.float32)]).astype(np.float32)
    white = (250 * rng.uniform(0.92, 1.02) * (1 + rng.normal(0, 0.015, 3))).astype(np.float32)
    img = white * np.exp(-od.reshape(size, size, 3))
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.45, 1.0) * sc)
    sd = np.sqrt(rng.uniform(1.0, 9.0) + rng.uniform(0.02, 0.1) * img)
    img += sd * _gauss(rng, img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _nucleoli(rng, size, sc, nuc) -> np.ndarray:
    """(size, size) float32: 0-2 faint nucleoli (value ~0.3 inside) within the nucleus."""
    out = np.zeros((size, size), np.float32)
    k = 2 * int(3 * sc) + 1
    ys, xs = np.nonzero(cv2.erode(nuc.astype(np.uint8), np.ones((k, k), np.uint8)))
    for _ in range(int(rng.integers(0, 3)) if len(xs) else 0):
        i = rng.integers(len(xs))
        rr = rng.uniform(2.5, 4.5) * sc
        m = _fill(size, [_outline((xs[i], ys[i]), rr, rr * rng.uniform(0.7, 1), rng.uniform(0, np.pi))])
        out[m] = rng.uniform(0.2, 0.35)
    return cv2.GaussianBlur(out, (0, 0), 0.8 * sc)


def _vacuoles(rng, size, sc, cyto) -> np.ndarray:
    """(size, size) float32 in [0, 1]: 0-4 small round vacuoles centred in the cytoplasm."""
    out = np.zeros((size, size), np.uint8)
    ys, xs = np.nonzero(cyto)
    for _ in range(int(rng.integers(0, 5)) if len(xs) else 0):
        i = rng.integers(len(xs))
        rr = int(round(rng.uniform(1.5, 3.2) * sc * (1 << _SHIFT)))
        cv2.circle(out, (int(xs[i]) << _SHIFT, int(ys[i]) << _SHIFT), rr, 1, -1, cv2.LINE_8, _SHIFT)
    return out.astype(np.float32)


def _params(n_per_class: int, seed: int, size: int, classes: Sequence[str]) -> dict:
    return {"version": GENERATOR_VERSION, "n_per_class": int(n_per_class), "seed": int(seed),
            "size": int(size), "classes": list(classes)}


def _is_complete(root: pathlib.Path, params: dict) -> bool:
    """True when root holds the data set of ``params``: the marker names them and every file
    listed in the file list (and no other) is there with its size and sha256."""
    try:
        if json.loads((root / _MARKER).read_text()) != params:
            return False
    except (OSError, ValueError):
        return False
    problem = _check_files(root)
    if problem:
        log.warning("synthetic data set %s: %s; generating it again", root, problem)
    return problem is None


def _listing(root: pathlib.Path) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of the images and ground_truth.csv under root."""
    return {rel: [st.st_size, file_sha256(root / rel)] for rel, st in sorted(_stats(root).items())}


def _check_files(root: pathlib.Path) -> str | None:
    """What differs between root's files and its file list (None when nothing does)."""
    try:
        listed = json.loads((root / _FILES).read_text())
        if not isinstance(listed, dict):
            return f"{_FILES} is not a file list"
        found = _stats(root)
        missing, extra = sorted(set(listed) - set(found)), sorted(set(found) - set(listed))
        if missing:
            return f"{len(missing)} file(s) missing (e.g. {missing[0]})"
        if extra:
            return f"{len(extra)} file(s) it did not generate (e.g. {extra[0]})"
        for rel, (size, digest) in listed.items():
            if found[rel].st_size != size or file_sha256(root / rel) != digest:
                return f"{rel} differs from the generated file"
    except FileNotFoundError:
        return f"no file list {_FILES} (written by an older bmbench)"
    except (OSError, ValueError, TypeError) as exc:
        return f"cannot check its files ({type(exc).__name__})"
    return None


def _stats(root: pathlib.Path) -> dict[str, os.stat_result]:
    """``{relative path: stat}`` of ground_truth.csv and every entry one folder down."""
    out = {}
    for path in [root / "ground_truth.csv", *root.glob("*/*")]:
        try:
            out[path.relative_to(root).as_posix()] = path.stat()
        except OSError:
            continue
    return out


def generate(root: str | os.PathLike, n_per_class: int, seed: int = 0, size: int = 128,
             classes: Sequence[str] = SYNTHETIC_CLASSES) -> pathlib.Path:
    """Write root/<class>/<class>_<00001>.png for each class and root/ground_truth.csv.

    The csv has columns file (path relative to root, '/'-separated), label, lobes,
    nucleus_area_px, cell_area_px. Image i (0-based, file number i + 1) of class
    ``SYNTHETIC_CLASSES[ci]`` uses ``np.random.default_rng([seed, ci, i])``, so files are
    byte-identical for the same (n_per_class, seed, size, classes), and adding images or
    choosing a subset of classes keeps existing images.
    Files are written to a temporary sibling folder that is then renamed to root, with a
    ``.complete`` marker holding the parameters; if root already has a marker with the
    same parameters nothing is written. An existing root that is empty or has a marker
    for other parameters is replaced; any other existing root raises FileExistsError.
    Raises ValueError for unknown or repeated classes, size < 32 or n_per_class < 1.
    Returns root as a pathlib.Path.
    """
    classes = list(classes)
    for label in classes:
        _check_label(label)
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct and non-empty, got {classes}")
    if size < 32 or n_per_class < 1:
        raise ValueError(f"need size >= 32 and n_per_class >= 1, got {size} and {n_per_class}")
    root = pathlib.Path(root)
    params = _params(n_per_class, seed, size, classes)
    if _is_complete(root, params):
        return root
    if root.exists() and not (root / _MARKER).exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not a synthetic data set; "
                              "remove it or pick another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(root)
    tmp.mkdir()
    try:
        _write(tmp, params)
        _install(tmp, root, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write(tmp: pathlib.Path, params: dict) -> None:
    """Render every image of `params` into tmp with the csv and, last, the marker."""
    rows = []
    for label in params["classes"]:
        ci = SYNTHETIC_CLASSES.index(label)
        (tmp / label).mkdir()
        for i in range(params["n_per_class"]):
            cell = render_cell(label, np.random.default_rng([params["seed"], ci, i]), params["size"])
            rel = f"{label}/{label}_{i + 1:05d}.png"
            # encoded here and written by Python (the same bytes cv2.imwrite writes), so a
            # full disk is an OSError naming the file, not a bare False and a libpng message
            ok, png = cv2.imencode(".png", cv2.cvtColor(cell.image, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OSError(errno.EIO, "could not encode the image", str(tmp / rel))
            try:
                (tmp / rel).write_bytes(png.tobytes())
            except OSError as exc:  # a failed write names no file by itself
                raise OSError(exc.errno, exc.strerror, str(tmp / rel)) from None
            rows.append((rel, label, cell.lobes, int(cell.nucleus_mask.sum()), int(cell.cell_mask.sum())))
    with open(tmp / "ground_truth.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label", "lobes", "nucleus_area_px", "cell_area_px"])
        w.writerows(rows)
    (tmp / _FILES).write_text(json.dumps(_listing(tmp)))
    (tmp / _MARKER).write_text(json.dumps(params, sort_keys=True))


def _install(tmp: pathlib.Path, root: pathlib.Path, params: dict) -> None:
    """Atomically move tmp to root, replacing a stale/empty root; tolerate a concurrent writer."""
    old = None
    if root.exists():
        old = root.parent / f"{tmp.name}.old"
        os.rename(root, old)
    try:
        os.rename(tmp, root)
    except OSError:
        if not _is_complete(root, params):  # someone else finished first with other params
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

"""bmbench's own preprocessing steps: each fitted on training images, uint8 in and out, and
doing what its name says on images whose right answer is known."""

import json

import numpy as np
import pytest

from bmbench.config.recipe import recipe_from_dict
from bmbench.data.preprocessing import fit_steps
from bmbench.data.steps.stain import background, foreground
from bmbench.data.synthetic import render_cell

STEPS = ["white_balance", "reinhard", "histogram_match", "macenko"]


def cells(n=12, seed=0, size=96):
    rng = np.random.default_rng(seed)
    return [render_cell(label, rng, size).image for label in ("blast", "lymphocyte", "monocyte", "neutrophil")
            for _ in range(n // 4)]


def tint(image, gains):
    return np.clip(image.astype(np.float64) * np.asarray(gains), 0, 255).astype(np.uint8)


def fitted(name, images, **options):
    raw = {"name": "t", "dataset": {"kind": "synthetic", "preprocess": [{name: options} if options else name]},
           "model": {"family": "baseline"}}
    return fit_steps(recipe_from_dict(raw).dataset.preprocess, images)[0]


@pytest.mark.parametrize("name", STEPS)
def test_every_step_keeps_the_shape_and_dtype_and_its_state_is_json(name):
    step = fitted(name, cells())
    json.dumps(step.record())  # stored in model/preprocessing.json
    for image in [cells(4, seed=1)[0], np.full((20, 30, 3), 230, np.uint8), cells(4, seed=2, size=41)[1][:, :17]]:
        out = step.apply(np.ascontiguousarray(image))
        assert out.dtype == np.uint8 and out.shape == image.shape


@pytest.mark.parametrize("name", STEPS)
def test_the_reference_comes_from_the_training_images(name):
    a, b = fitted(name, cells()), fitted(name, [tint(im, (0.8, 0.9, 1.0)) for im in cells()])
    assert a.identity != b.identity


def test_white_balance_removes_a_colour_cast_of_the_background():
    train = cells()
    step = fitted("white_balance", train)
    target = np.asarray(step.state["background"])
    cast = tint(cells(4, seed=3)[0], (0.85, 0.95, 1.0))
    assert np.abs(background(cast) - target).max() > 10
    assert np.abs(background(step.apply(cast)) - target).max() < 3


@pytest.mark.parametrize("region", ["foreground", "image"])
def test_reinhard_matches_the_lab_statistics_of_the_chosen_pixels(region):
    import cv2

    step = fitted("reinhard", cells(), region=region)
    out = step.apply(tint(cells(4, seed=4)[2], (0.7, 0.8, 1.0)))
    lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float64)
    pixels = lab[foreground(out)] if region == "foreground" else lab.reshape(-1, 3)
    assert np.abs(pixels.mean(axis=0) - step.state["mean"]).max() < 6


def test_histogram_matching_maps_onto_the_reference_distribution():
    train = cells()
    step = fitted("histogram_match", train)
    shifted = tint(cells(4, seed=5)[1], (0.6, 0.6, 0.6))
    out = step.apply(shifted)
    ref = np.concatenate([im.reshape(-1, 3) for im in train])
    assert abs(np.median(out[..., 0]) - np.median(ref[:, 0])) < abs(np.median(shifted[..., 0]) - np.median(ref[:, 0]))
    assert abs(np.median(out[..., 0]) - np.median(ref[:, 0])) < 8


def test_macenko_brings_the_stain_vectors_of_another_staining_to_the_reference():
    step = fitted("macenko", cells())
    ref = np.asarray(step.state["stain_matrix"])
    other = [tint(im, (0.75, 0.9, 1.0)) for im in cells(12, seed=7)]
    cosine = lambda a, b: (a * b).sum(0) / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0)  # noqa: E731
    before = cosine(ref, np.asarray(fitted("macenko", other).state["stain_matrix"]))
    after = cosine(ref, np.asarray(fitted("macenko", [step.apply(im) for im in other]).state["stain_matrix"]))
    assert (after > before).all() and after.min() > 0.99


def test_macenko_leaves_a_crop_without_stain_unchanged():
    step = fitted("macenko", cells())
    blank = np.full((16, 16, 3), 235, np.uint8)
    assert np.array_equal(step.apply(blank), blank)

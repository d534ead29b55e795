"""Decoding every supported image flavour to (H, W, 3) uint8 RGB, resizing, bad-image policy."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from bmbench.data.imageio import is_image_file, read_rgb, resize
from bmbench.data.images import ImageSource
from bmbench.core.errors import DatasetError


def assert_rgb(image, shape):
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8
    assert image.shape == (*shape, 3)
    assert image.flags.writeable


# --- colour modes -----------------------------------------------------------------------

def test_rgb_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    out = read_rgb(tmp_path / "x.png")
    assert_rgb(out, (7, 9))
    np.testing.assert_array_equal(out, rgb)


def test_rgb_jpeg(tmp_path, make_image):
    out = read_rgb(make_image(tmp_path / "x.jpg", size=(20, 10), color=(200, 30, 40)))
    assert_rgb(out, (10, 20))
    assert np.abs(out.astype(int) - (200, 30, 40)).max() <= 3


@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0 chroma
def test_jpeg_fast_path_gives_pils_pixels(tmp_path, monkeypatch, subsampling):
    import bmbench.data.imageio as imageio

    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 256, (12, 16, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "x.jpg", quality=90, subsampling=subsampling)
    with Image.open(tmp_path / "x.jpg") as im:
        expected = np.asarray(im.convert("RGB"))
    calls = []
    fast = imageio._jpeg_fast_path
    monkeypatch.setattr(imageio, "_jpeg_fast_path", lambda *a: calls.append(1) or fast(*a))
    out = read_rgb(tmp_path / "x.jpg")
    assert calls and out.flags.writeable
    np.testing.assert_array_equal(out, expected)


def test_jpeg_with_bytes_after_its_end_marker_still_decodes(tmp_path, make_image):
    path = make_image(tmp_path / "x.jpg", (20, 30), "RGB")
    expected = read_rgb(path)
    path.write_bytes(path.read_bytes() + b"trailing bytes of some scanner")
    np.testing.assert_array_equal(read_rgb(path), expected)


def test_grayscale_png(tmp_path, make_image):
    out = read_rgb(make_image(tmp_path / "g.png", size=(5, 4), mode="L", color=77))
    assert_rgb(out, (4, 5))
    assert (out == 77).all()


def test_bilevel_png(tmp_path, make_image):
    out = read_rgb(make_image(tmp_path / "b.png", size=(5, 4), mode="1", color=1))
    assert (out == 255).all()


def test_rgba_png_is_composited_on_white(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[0, 0] = (10, 20, 30, 0)        # fully transparent -> white
    a[0, 1] = (10, 20, 30, 255)      # opaque -> unchanged
    a[0, 2] = (0, 0, 0, 128)         # half transparent black -> mid grey
    a[1] = (200, 100, 50, 255)
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    out = read_rgb(tmp_path / "t.png")
    assert_rgb(out, (2, 3))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 1]) == (10, 20, 30)
    assert all(120 <= v <= 135 for v in out[0, 2])
    assert (out[1] == (200, 100, 50)).all()


def test_la_png_is_composited_on_white(tmp_path):
    Image.new("LA", (3, 2), (40, 0)).save(tmp_path / "la.png")
    assert (read_rgb(tmp_path / "la.png") == 255).all()


def test_palette_png(tmp_path):
    im = Image.new("P", (4, 3), 1)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    im.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = read_rgb(tmp_path / "p.png")
    assert_rgb(out, (3, 4))
    assert (out == (10, 200, 30)).all()


def test_palette_png_with_transparent_index(tmp_path):
    im = Image.new("P", (4, 3), 0)
    im.putpalette([10, 20, 30, 40, 50, 60] + [0, 0, 0] * 254)
    im.putpixel((1, 1), 1)
    im.save(tmp_path / "pt.png", transparency=0)
    out = read_rgb(tmp_path / "pt.png")
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (40, 50, 60)


def test_generated_palette_png_fixture(tmp_path, make_image):
    out = read_rgb(make_image(tmp_path / "q.png", size=(6, 5), mode="P"))
    assert_rgb(out, (5, 6))


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_is_converted_to_rgb(tmp_path, suffix):
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(tmp_path / f"c{suffix}")  # pure red
    assert Image.open(tmp_path / f"c{suffix}").mode == "CMYK"
    out = read_rgb(tmp_path / f"c{suffix}")
    assert_rgb(out, (4, 6))
    assert out[..., 0].min() >= 240 and out[..., 1:].max() <= 15


def test_16_bit_grayscale_png_uses_the_full_range(tmp_path):
    a = np.array([[0, 257 * 100, 65535]], np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    out = read_rgb(tmp_path / "g16.png")
    assert_rgb(out, (1, 3))
    assert out[0, :, 0].tolist() == [0, 100, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_dark_16_bit_grayscale_png_stays_dark(tmp_path):
    Image.fromarray(np.full((2, 2), 200, np.uint16)).save(tmp_path / "dark.png")
    assert read_rgb(tmp_path / "dark.png").max() <= 1


def test_16_bit_rgb_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    a = np.zeros((3, 4, 3), np.uint16)
    a[..., 0] = 65535
    a[..., 1] = 257 * 100
    a[2, 3] = (0, 0, 65535)
    tifffile.imwrite(tmp_path / "rgb16.tif", a, photometric="rgb")
    out = read_rgb(tmp_path / "rgb16.tif")
    assert_rgb(out, (3, 4))
    assert tuple(out[0, 0]) == (255, 100, 0)
    assert tuple(out[2, 3]) == (0, 0, 255)


@pytest.mark.parametrize("suffix", [".tif", ".tiff"])
def test_16_bit_grayscale_tiff(tmp_path, suffix):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / f"g16{suffix}", np.array([[0, 32768, 65535]], np.uint16))
    out = read_rgb(tmp_path / f"g16{suffix}")
    assert_rgb(out, (1, 3))
    assert out[0, :, 1].tolist() == [0, 128, 255]


def test_float_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "f.tif", np.array([[0.0, 0.5, 1.0]], np.float32))
    assert read_rgb(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 128, 255]


def test_8_bit_tiffs(tmp_path):
    Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp_path / "rgb.tif")
    Image.new("L", (3, 2), 9).save(tmp_path / "l.tif")
    Image.new("1", (3, 2), 1).save(tmp_path / "b.tif")
    Image.new("RGBA", (3, 2), (0, 0, 0, 0)).save(tmp_path / "rgba.tif")
    Image.new("LA", (3, 2), (9, 0)).save(tmp_path / "la.tif")
    assert (read_rgb(tmp_path / "rgb.tif") == (1, 2, 3)).all()
    assert (read_rgb(tmp_path / "l.tif") == 9).all()
    assert (read_rgb(tmp_path / "b.tif") == 255).all()       # white stays white
    assert (read_rgb(tmp_path / "rgba.tif") == 255).all()    # transparent -> white
    assert (read_rgb(tmp_path / "la.tif") == 255).all()      # same as the PNG


def test_bmp(tmp_path, make_image):
    assert_rgb(read_rgb(make_image(tmp_path / "x.bmp", size=(3, 5))), (5, 3))


def test_one_by_one_image(tmp_path, make_image):
    out = read_rgb(make_image(tmp_path / "1.png", size=(1, 1), color=(1, 2, 3)))
    assert_rgb(out, (1, 1))
    assert tuple(out[0, 0]) == (1, 2, 3)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (6, 2), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    im.save(tmp_path / "o.jpg", exif=exif)
    assert read_rgb(tmp_path / "o.jpg").shape == (6, 2, 3)


@pytest.mark.parametrize("name", ["with space.png", "zelle ä ö ß.png", "细胞 1.jpg", "a'b\"c.png"])
def test_unusual_file_names(tmp_path, make_image, name):
    out = read_rgb(make_image(tmp_path / "dir with space" / name, size=(4, 3)))
    assert_rgb(out, (3, 4))


def test_read_rgb_accepts_str_paths(tmp_path, make_image):
    p = make_image(tmp_path / "s.png", size=(2, 2))
    np.testing.assert_array_equal(read_rgb(str(p)), read_rgb(p))


# --- broken files -----------------------------------------------------------------------

def broken(tmp_path, make_image, what):
    if what == "zero-byte":
        p = tmp_path / "empty.png"
        p.write_bytes(b"")
    elif what == "text":
        p = tmp_path / "notes.jpg"
        p.write_text("this is not a JPEG\n")
    elif what == "truncated-jpeg":
        good = make_image(tmp_path / "good.jpg", size=(64, 64))
        p = tmp_path / "cut ä.jpg"
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif what == "truncated-png":
        good = make_image(tmp_path / "good.png", size=(64, 64))
        p = tmp_path / "cut.png"
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif what == "garbage-tif":
        p = tmp_path / "wrong.tif"
        p.write_bytes(b"II*\x00garbage")
    else:
        raise AssertionError(what)
    return p


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("what", ["zero-byte", "text", "truncated-jpeg", "truncated-png",
                                  "garbage-tif"])
def test_unreadable_files_raise_dataset_error_naming_the_path(tmp_path, make_image, what):
    p = broken(tmp_path, make_image, what)
    with pytest.raises(DatasetError) as info:
        read_rgb(p)
    message = str(info.value)
    assert message.startswith(str(p) + ":")
    assert "cannot decode image" in message and "dataset.on_bad_image" in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"gone\.png: image file not found"):
        read_rgb(tmp_path / "gone.png")


def test_pixel_limit_guard(tmp_path, make_image):
    p = make_image(tmp_path / "big.png", size=(20, 10))
    assert read_rgb(p, max_pixels=200).shape == (10, 20, 3)
    with pytest.raises(DatasetError, match=r"big\.png: image is 20x10 = 200 pixels.*limit of 199.*"
                                           r"dataset\.max_pixels"):
        read_rgb(p, max_pixels=199)


def test_pixel_limit_guard_on_16_bit_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((10, 20), np.uint16))
    with pytest.raises(DatasetError, match=r"dataset\.max_pixels"):
        read_rgb(tmp_path / "big.tif", max_pixels=100)


def test_is_image_file():
    assert is_image_file("a/b.JPG") and is_image_file("x.tiff") and is_image_file("x.bmp")
    assert not is_image_file("a/b.txt") and not is_image_file("jpg") and not is_image_file("x.gif")


# --- resize -----------------------------------------------------------------------------

def test_resize_to_square():
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    for size in (8, 64):
        out = resize(image, size)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8


def test_resize_same_size_is_unchanged():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize(image, 16), image)
    np.testing.assert_array_equal(resize(image, 16, keep_aspect=True), image)


def test_resize_of_a_solid_image_keeps_its_colour():
    image = np.full((10, 30, 3), (10, 120, 240), np.uint8)
    assert (resize(image, 12) == (10, 120, 240)).all()
    assert (resize(image, 60) == (10, 120, 240)).all()


@pytest.mark.parametrize("shape", [(20, 40), (40, 20)])
def test_resize_keep_aspect_pads_with_the_border_median(shape):
    h, w = shape
    image = np.full((h, w, 3), (200, 190, 180), np.uint8)   # background
    image[0, :3] = (0, 0, 0)                                 # a few odd border pixels
    image[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = (90, 20, 120)  # the "cell"
    out = resize(image, 40, keep_aspect=True)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    pad = out[:10] if h < w else out[:, :10]
    pad2 = out[30:] if h < w else out[:, 30:]
    assert (pad == (200, 190, 180)).all() and (pad2 == (200, 190, 180)).all()
    inner = out[10:30] if h < w else out[:, 10:30]
    assert (inner == (90, 20, 120)).all(axis=-1).any()       # the cell is still there


def test_resize_keep_aspect_downscales_the_long_side():
    image = np.zeros((100, 25, 3), np.uint8)
    image[:] = (5, 5, 5)
    image[:, 0] = (250, 250, 250)
    out = resize(image, 20, keep_aspect=True)
    assert out.shape == (20, 20, 3)
    # 100x25 -> 20x5, centred: columns 7..11 are image, the rest padding = border median
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = np.median(border, axis=0).astype(np.uint8)
    assert (out[:, :7] == fill).all() and (out[:, 12:] == fill).all()


def test_resize_keep_aspect_of_a_thin_image():
    out = resize(np.full((1, 200, 3), 7, np.uint8), 10, keep_aspect=True)
    assert out.shape == (10, 10, 3)
    assert (out == 7).all()


# --- ImageSource ------------------------------------------------------------------------

def test_image_reader_resizes(tmp_path, make_image):
    p = make_image(tmp_path / "a.png", size=(30, 20))
    reader = ImageSource(size=16)
    assert reader.read(p).shape == (16, 16, 3)
    assert reader.at(None).read(p).shape == (20, 30, 3)
    assert ImageSource().read(p).shape == (20, 30, 3)
    assert ImageSource(size=16, keep_aspect=True).read(p).shape == (16, 16, 3)


def test_image_reader_skip_records_and_returns_none(tmp_path, make_image, caplog):
    bad = broken(tmp_path, make_image, "truncated-jpeg")
    good = make_image(tmp_path / "ok.png", size=(8, 8))
    reader = ImageSource(size=8, on_bad_image="skip")
    with caplog.at_level(logging.WARNING, logger="bmbench.data.imageio"):
        assert reader.read(bad) is None
        assert reader.read(bad) is None
    assert reader.read(good).shape == (8, 8, 3)
    assert list(reader.skipped) == [str(bad)]
    assert str(bad) in reader.skipped[str(bad)]
    assert sum("skipping unreadable image" in r.getMessage() for r in caplog.records) == 1


def test_image_reader_skip_applies_the_pixel_limit(tmp_path, make_image):
    p = make_image(tmp_path / "big.png", size=(20, 20))
    reader = ImageSource(on_bad_image="skip", max_pixels=100)
    assert reader.read(p) is None
    assert "dataset.max_pixels" in reader.skipped[str(p)]


def test_image_reader_error_raises(tmp_path, make_image):
    bad = broken(tmp_path, make_image, "text")
    reader = ImageSource(size=8)
    with pytest.raises(DatasetError, match=r"notes\.jpg: cannot decode image"):
        reader.read(bad)
    assert reader.skipped == {}

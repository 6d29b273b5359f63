"""cnntrain.data.image_files: reading the user's image files, with real files written by Pillow."""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnntrain.errors import CnntrainError
from cnntrain.data.image_files import background_of, expand_paths, invert, looks_inverted, read_image

RNG = np.random.default_rng(0)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height, with one tiny IDAT: nothing big is allocated."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)   # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _message(path, **kw) -> CnntrainError:
    kw.setdefault("height", 28)
    kw.setdefault("width", 28)
    kw.setdefault("channels", 1)
    with pytest.raises(CnntrainError) as info:
        read_image(path, **kw)
    assert info.value.file == str(path)
    assert info.value.hint
    return info.value


# ----------------------------------------------------------------- good files

def test_png_round_trip_is_exact(tmp_path):
    rgb = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    gray = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = read_image(tmp_path / "rgb.png", height=20, width=30, channels=3)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)
    out = read_image(tmp_path / "gray.png", height=20, width=30, channels=1)
    assert out.shape == (20, 30, 1)
    np.testing.assert_array_equal(out[..., 0], gray)


def test_png_gray_to_rgb_and_rgb_to_gray(tmp_path):
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(tmp_path / "l.png")
    out = read_image(tmp_path / "l.png", height=4, width=4, channels=3)
    assert out.shape == (4, 4, 3) and (out == 77).all()
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(tmp_path / "rgb.png")
    out = read_image(tmp_path / "rgb.png", height=4, width=4, channels=1)
    assert out.shape == (4, 4, 1) and (out == 200).all()


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (10, 20, 30, 255)      # opaque: kept
    a[0, 1] = (10, 20, 30, 0)        # transparent: white
    a[1, 0] = (0, 0, 0, 128)         # half black over white
    a[1, 1] = (255, 0, 0, 255)
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png", height=2, width=2, channels=3)
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 0].tolist() == [127, 127, 127]
    assert out[1, 1].tolist() == [255, 0, 0]


def test_palette_gif_reads_first_frame(tmp_path):
    red = Image.new("RGB", (6, 5), (255, 0, 0)).convert("P")
    blue = Image.new("RGB", (6, 5), (0, 0, 255)).convert("P")
    red.save(tmp_path / "anim.gif", save_all=True, append_images=[blue], duration=100)
    with Image.open(tmp_path / "anim.gif") as check:
        assert check.n_frames == 2 and check.mode == "P"
    out = read_image(tmp_path / "anim.gif", height=5, width=6, channels=3)
    assert out.shape == (5, 6, 3)
    assert (out == [255, 0, 0]).all()


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "c.jpg")       # cyan
    out = read_image(tmp_path / "c.jpg", height=8, width=8, channels=3)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - [0, 255, 255]).max() <= 2


def test_16_bit_png_scaled_to_8_bit(tmp_path):
    values = np.array([[0, 128, 257 * 100], [257 * 128, 65280, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode == "I;16"
    out = read_image(tmp_path / "deep.png", height=2, width=3, channels=1)
    assert out.dtype == np.uint8
    assert out[..., 0].tolist() == [[0, 0, 100], [128, 254, 255]]


def _one_of_each_mode(folder):
    """Files of one content (a light ground, a dark stroke, half of it see-through where it can be)
    in the modes people's images come in. Returns {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    gray = np.full((6, 5), 230, np.uint8)
    gray[1:5, 2] = 20
    rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1)
    alpha = np.full((6, 5), 255, np.uint8)
    alpha[:, :2] = 0
    palette = Image.fromarray(rgb, "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])
    images = {
        "gray8.png": Image.fromarray(gray, "L"),
        "rgb8.png": Image.fromarray(rgb, "RGB"),
        "gray16.png": Image.fromarray(gray.astype(np.uint16) * 256 + 128),     # 230 * 256 + 128 = 59008
        "palette-alpha.png": palette,
        "rgba.png": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "gray-alpha.png": Image.fromarray(np.dstack([gray, alpha]), "LA"),
        "cmyk.jpg": Image.fromarray(rgb, "RGB").convert("CMYK"),
        "float.tif": Image.fromarray(gray.astype(np.float32) / 255, "F"),
    }
    turned = Image.fromarray(np.ascontiguousarray(np.rot90(gray)), "L")   # stored 6 wide, 5 high
    exif = turned.getexif()
    exif[0x0112] = 6                       # shown turned back: 5 wide, 6 high like the others
    paths = {"exif-turned.png": folder / "exif-turned.png"}
    turned.save(paths["exif-turned.png"], exif=exif)
    for name, im in images.items():
        im.save(folder / name, transparency=im.info["transparency"]) if "transparency" in im.info else \
            im.save(folder / name)
        paths[name] = folder / name
    return paths


@pytest.mark.parametrize("channels", [1, 3])
def test_training_and_predict_decode_a_file_to_the_same_array(tmp_path, channels):
    """Was: 16-bit PNG by `>> 8` in training and by /257 in predict (65280 gave 255 and 254), float
    images clipped against scaled, alpha dropped against composited on white."""
    from cnntrain.data import load_dataset

    files = _one_of_each_mode(tmp_path / "files")
    for name, path in files.items():
        root = tmp_path / name.replace(".", "-")
        for label in ("a", "b"):
            (root / label).mkdir(parents=True)
            (root / label / name).write_bytes(path.read_bytes())
        trained_on = load_dataset("image_folder", path=str(root), color_mode="grayscale" if channels == 1 else "rgb")
        predicted = read_image(path, height=6, width=5, channels=channels)
        assert predicted.shape == (6, 5, channels) and predicted.dtype == np.uint8
        np.testing.assert_array_equal(trained_on.x_train[0], predicted, err_msg=name)
        np.testing.assert_array_equal(trained_on.x_train[1], predicted, err_msg=name)
    see_through = read_image(files["rgba.png"], height=6, width=5, channels=3)
    assert (see_through[:, :2] == 255).all()                    # composited on white in both
    scaled = read_image(files["float.tif"], height=6, width=5, channels=1)
    assert scaled[0, 0, 0] == 230                               # 0..1 floats scaled, not clipped to 0 and 1


def test_16_bit_png_the_same_in_a_training_folder(tmp_path):
    from cnntrain.data import load_dataset

    values = np.array([[0, 128, 257 * 100], [257 * 128, 65280, 65535]], np.uint16)
    for label in ("a", "b"):
        (tmp_path / "w" / label).mkdir(parents=True)
        Image.fromarray(values).save(tmp_path / "w" / label / "deep.png")
    ds = load_dataset("image_folder", path=str(tmp_path / "w"))
    assert ds.x_train[0, ..., 0].tolist() == [[0, 0, 100], [128, 254, 255]]


def test_bmp_and_tiff(tmp_path):
    rgb = RNG.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for name in ("x.bmp", "x.tiff"):
        Image.fromarray(rgb).save(tmp_path / name)
        np.testing.assert_array_equal(read_image(tmp_path / name, height=9, width=7, channels=3), rgb)


def test_bilevel_and_la(tmp_path):
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png", height=1, width=2, channels=1)[..., 0].tolist() == [[0, 255]]
    la = np.array([[[0, 255], [0, 0]]], np.uint8)         # black opaque, black transparent
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png", height=1, width=2, channels=1)[..., 0].tolist() == [[0, 255]]


def test_resize_only_when_needed(tmp_path):
    Image.fromarray(np.full((56, 40), 90, np.uint8)).save(tmp_path / "big.png")
    out = read_image(tmp_path / "big.png", height=28, width=20, channels=1)
    assert out.shape == (28, 20, 1) and (out == 90).all()
    stripes = np.zeros((4, 4), np.uint8)
    stripes[:, ::2] = 255
    Image.fromarray(stripes).save(tmp_path / "s.png")
    out = read_image(tmp_path / "s.png", height=4, width=8, channels=1)[..., 0]
    assert out.shape == (4, 8)
    assert 0 < out.std() and len(np.unique(out)) > 2      # bilinear, not nearest


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((10, 20), np.uint8)      # 20 wide, 10 high; right half white
    a[:, 10:] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6                      # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.png", exif=exif)
    out = read_image(tmp_path / "r.png", height=20, width=10, channels=1)[..., 0]
    assert (out[:10] == 0).all() and (out[10:] == 255).all()


# ----------------------------------------------------------------- bad files

def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    assert _message(tmp_path / "e.png").message == "empty file (0 bytes)"


def test_text_file_named_png(tmp_path):
    (tmp_path / "t.png").write_text("hello, not an image\n")
    assert _message(tmp_path / "t.png").message == "not an image (or a format Pillow cannot read)"


def test_truncated_png(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    err = _message(tmp_path / "cut.png", height=64, width=64, channels=3)
    assert err.message == "truncated or corrupt image data"
    assert "truncated" in err.hint


def test_declared_huge_png_is_refused_before_decoding(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    assert (tmp_path / "bomb.png").stat().st_size < 100
    assert _message(tmp_path / "bomb.png").message == \
        "image too large: 10,000,000,000 pixels declared, limit 50,000,000"
    # Below Pillow's own limit, above ours: our check on the declared size.
    _png_header_only(tmp_path / "wide.png", 10_000, 6_000)
    assert _message(tmp_path / "wide.png").message == \
        "image too large: 60,000,000 pixels declared (10000x6000), limit 50,000,000"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "ok.png")
    assert _message(tmp_path / "ok.png", max_pixels=100).message == \
        "image too large: 784 pixels declared (28x28), limit 100"


def test_directory_and_missing(tmp_path):
    assert _message(tmp_path).message == "is a folder, not an image file"
    assert _message(tmp_path / "nope.png").message == "no such file"


def test_unreadable(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "p.png")
    if os.name == "posix" and os.geteuid() != 0:
        os.chmod(tmp_path / "p.png", 0)
    else:   # root reads any file: make open() refuse as it would for another user
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr("cnntrain.data.image_files.open", refuse, raising=False)
    try:
        assert _message(tmp_path / "p.png").message == "cannot read file: permission denied"
    finally:
        os.chmod(tmp_path / "p.png", 0o644)


def test_unsupported_channels(tmp_path):
    with pytest.raises(CnntrainError, match="4 channels"):
        read_image(tmp_path / "x.png", height=2, width=2, channels=4)


# ----------------------------------------------------------------- expand_paths

def test_expand_paths(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.png", "d/a.JPG", "d/sub/c.gif", "d/notes.txt", "top.png", "odd.data"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, errors = expand_paths([str(tmp_path / "d")])
    assert files == [tmp_path / "d/a.JPG", tmp_path / "d/b.png", tmp_path / "d/sub/c.gif"]
    assert errors == []
    files, errors = expand_paths([str(tmp_path / "*.png"), str(tmp_path / "odd.data"),
                                  str(tmp_path / "top.png"), str(tmp_path / "d/**/*.gif")])
    assert files == [tmp_path / "top.png", tmp_path / "odd.data", tmp_path / "d/sub/c.gif"]
    assert errors == []
    files, errors = expand_paths([str(tmp_path / "missing.png"), str(tmp_path / "*.webp"),
                                  str(tmp_path / "d/*.txt"), str(tmp_path / "empty"),
                                  str(tmp_path / "top.png")])
    assert files == [tmp_path / "top.png"]
    assert [(e.message, e.file) for e in errors] == [
        ("no such file or folder", str(tmp_path / "missing.png")),
        ("pattern matches no files", str(tmp_path / "*.webp")),
        ("pattern matches no image files", str(tmp_path / "d/*.txt")),
        ("folder holds no image files", str(tmp_path / "empty")),
    ]


# ----------------------------------------------------------------- backgrounds

def _digit(background: int, ink: int) -> np.ndarray:
    a = np.full((28, 28), background, np.uint8)
    a[6:22, 12:16] = ink          # a "1"
    a[6:9, 9:14] = ink
    return a[..., None]


def test_looks_inverted_and_invert():
    light = _digit(255, 0)        # black ink on white paper
    dark = _digit(0, 255)         # MNIST style
    assert looks_inverted(light, "dark") is True
    assert looks_inverted(dark, "dark") is False
    assert looks_inverted(dark, "light") is True
    assert looks_inverted(light, "light") is False
    np.testing.assert_array_equal(invert(light), dark)
    assert invert(light).dtype == np.uint8
    rgb = np.repeat(light, 3, axis=-1)
    assert looks_inverted(rgb, "dark") is True
    with pytest.raises(CnntrainError, match=r"^unknown background 'grey'\n  hint: use 'dark' or 'light'$"):
        looks_inverted(light, "grey")


def test_background_of():
    darks = np.stack([_digit(0, 255)] * 5)
    lights = np.stack([_digit(250, 10)] * 5)
    assert background_of(darks) == "dark"
    assert background_of(lights) == "light"
    assert background_of(darks[..., 0].astype(np.float32) / 255) == "dark"
    # Only grayscale images on one plain ground near black or white: never colour, never photographs.
    assert background_of(np.repeat(lights, 3, axis=-1)) is None
    assert background_of(np.stack([_digit(128, 255)] * 5)) is None
    photos = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1)).astype(np.uint8)
    assert background_of(photos) is None
    fashion = np.stack([_digit(0, 200)] * 5)
    fashion[:, :, 4:24] = 180                  # things that reach two edges, on black: half the border
    assert background_of(fashion) == "dark"
    with pytest.raises(CnntrainError, match=r"^expected a stack of images \(N, H, W\[, C\]\), got shape \(3,\)\n"):
        background_of(np.zeros((3,)))

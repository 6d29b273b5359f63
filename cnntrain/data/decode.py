"""Decoding many image files into one uint8 array, in parallel.

Pillow releases the GIL while it decodes, so a thread pool scales across cores
without pickling pixels between processes.
"""
from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnntrain.errors import CnntrainError

from .checks import fail

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Modes with one value per pixel; a class of only these means a grayscale data set.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class Item:
    """One image: its bytes (from an archive) or its path, and where to blame."""
    data: bytes | str
    file: str                  # the file, or the archive holding it
    member: str | None = None  # the member name inside that archive

    @property
    def name(self) -> str:
        return self.member or self.file

    def say(self, message: str) -> str:
        return f"member '{self.member}': {message}" if self.member else message


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


# Naming the format skips probing every plugin: about 10% of the time a small
# JPEG takes. A file whose extension lies is retried with probing.
_FORMATS = {".png": ("PNG",), ".jpg": ("JPEG",), ".jpeg": ("JPEG",), ".bmp": ("BMP",),
            ".gif": ("GIF",), ".tif": ("TIFF",), ".tiff": ("TIFF",), ".webp": ("WEBP",)}


def _open(item: Item) -> Image.Image:
    src = io.BytesIO(item.data) if isinstance(item.data, bytes) else item.data
    formats = _FORMATS.get(os.path.splitext(item.name)[1].lower())
    try:
        return Image.open(src, formats=formats)
    except UnidentifiedImageError:
        if formats is None:
            raise
        if isinstance(src, io.BytesIO):
            src.seek(0)
        return Image.open(src)


def _broken(item: Item, e: Exception):
    if isinstance(e, Image.DecompressionBombError):
        return fail(item.say(f"is too large to decode safely ({e})"), item.file,
                    hint="resize the image; Pillow's decompression-bomb limit guards "
                         "against malicious files")
    return fail(item.say(f"cannot be decoded as an image ({type(e).__name__}: {e})"), item.file,
                hint="remove or replace the file; it is truncated, corrupt, or not the "
                     "format its extension says")


def _upright_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as shown, after the EXIF orientation that to_pixels applies."""
    try:
        turned = im.getexif().get(0x0112) in (5, 6, 7, 8)   # orientations that swap the sides
    except Exception:  # a broken EXIF block is ignored by to_pixels too
        turned = False
    return im.size[::-1] if turned else im.size


def probe(item: Item) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height) as shown) from the header only."""
    try:
        with _open(item) as im:
            return im.mode, _upright_size(im)
    except Exception as e:  # a decoder fed arbitrary bytes can raise anything
        raise _broken(item, e) from e


def guess_color_mode(items: list[Item]) -> str:
    """"grayscale" if every one of these (headers only) is single-channel, else "rgb"."""
    return "grayscale" if all(probe(i)[0] in GRAY_MODES for i in items) else "rgb"


def _to_8bit(im: Image.Image) -> Image.Image:
    """Any mode to L, RGB, RGBA or LA with 8 bits per channel."""
    mode = im.mode
    if mode in ("L", "RGB", "RGBA", "LA"):
        return im
    if mode in ("P", "PA"):
        return im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
    if mode.startswith("I"):   # I;16, I;16B, I;16L, I;16N, I
        a = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if mode == "1":
        return im.convert("L")
    return im.convert("RGBA" if "A" in mode else "RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...


# Visible pixels this light on average (alpha-weighted luma) would vanish on white.
_LIGHT_INK = 192


def _ground_for(rgba: Image.Image) -> int:
    """255 (white), or 0 where what is visible is itself light: a white digit on a transparent
    background composited on white was a blank image."""
    a = np.asarray(rgba, dtype=np.float64)
    weight = a[..., 3].sum()
    if weight == 0:
        return 255
    luma = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return 0 if (luma * a[..., 3]).sum() / weight >= _LIGHT_INK else 255


def _flatten_alpha(im: Image.Image) -> Image.Image:
    if im.mode not in ("RGBA", "LA"):
        return im
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    g = _ground_for(rgba)
    flat = Image.alpha_composite(Image.new("RGBA", im.size, (g, g, g, 255)), rgba)
    return flat.convert("RGB" if im.mode == "RGBA" else "L")


def to_pixels(im: Image.Image, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """An opened image (its current frame) as the uint8 (H, W, channels) array a model is fed, at
    size (width, height). The one conversion for training images and for predict's files, so the
    same file reaches the model as the same array either way:
    - EXIF orientation is applied (a phone photo reads the way a viewer shows it);
    - transparency (RGBA, LA, a palette with a transparent colour) is composited on white, as
      an image viewer on a light page shows it, unless what is visible is light itself (its
      alpha-weighted mean luma at least 192: a white digit on a transparent background), which
      white would erase: that is composited on black;
    - 16-bit and 32-bit integer images (I;16, I) are scaled from 0..65535 to 0..255 by
      value / 257, rounded; float images (F) are taken as 0..1 when their maximum is at most 1,
      else as 0..255; both are clipped;
    - palette, CMYK, bilevel and other modes go through Pillow's own conversion to RGB, then
      to L (ITU-R 601-2 luma) for one channel;
    - the image is resized (bilinear) only if its size differs (size None: never).
    """
    try:
        im = ImageOps.exif_transpose(im) or im
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        pass     # a broken EXIF block: keep the pixels as stored
    im = _flatten_alpha(_to_8bit(im)).convert("L" if channels == 1 else "RGB")
    if size is not None and im.size != tuple(size):
        im = im.resize(tuple(size), Image.Resampling.BILINEAR)
    a = np.array(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def _decode(item: Item, gray: bool, size: tuple[int, int], resize: bool, first: Item | None):
    """(H, W, 1) for grayscale, (H, W, 3) for rgb, at size (width, height)."""
    try:
        with _open(item) as im:
            shown = _upright_size(im)
            if shown != size and not resize:
                raise fail(item.say(f"is {shown[0]}x{shown[1]} (width x height), but "
                                    f"images are expected to be {size[0]}x{size[1]} like "
                                    f"'{first.member or first.file}'"), item.file,
                           hint="set data.image_size: [height, width] to resize every image")
            return to_pixels(im, 1 if gray else 3, size)
    except Exception as e:  # our own error passes; decoders raise anything
        if isinstance(e, CnntrainError):
            raise
        raise _broken(item, e) from e


def workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def decode_all(items: list[Item], color_mode: str, size: tuple[int, int], resize: bool,
               reference: Item) -> np.ndarray:
    """All items as uint8 (N, H, W, C) at size (width, height). Without resize,
    an image of another size is an error naming `reference`, whose size it is."""
    gray = color_mode == "grayscale"
    out = np.empty((len(items), size[1], size[0], 1 if gray else 3), dtype=np.uint8)
    first = reference
    stop = threading.Event()

    def run(lo: int, hi: int):
        for i in range(lo, hi):
            if stop.is_set():
                return
            out[i] = _decode(items[i], gray, size, resize, first)

    n, k = len(items), workers()
    if n < 256 or k == 1:
        run(0, n)
        return out
    step = max(64, n // (k * 16))
    pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix="cnntrain-decode")
    try:
        futures = [pool.submit(run, lo, min(lo + step, n)) for lo in range(0, n, step)]
        for f in futures:
            try:
                f.result()
            except BaseException:
                stop.set()
                raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out

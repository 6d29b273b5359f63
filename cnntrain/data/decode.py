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
from PIL import Image, UnidentifiedImageError

from cnntrain.errors import CnntrainError

from .checks import fail

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Modes with one value per pixel; a class of only these means a grayscale data set.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_WIDE_GRAY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


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


def probe(item: Item) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the header only."""
    try:
        with _open(item) as im:
            return im.mode, im.size
    except Exception as e:  # noqa: BLE001 - a decoder fed arbitrary bytes can raise anything
        raise _broken(item, e) from e


def guess_color_mode(items: list[Item]) -> str:
    """"grayscale" if every one of these (headers only) is single-channel, else "rgb"."""
    return "grayscale" if all(probe(i)[0] in GRAY_MODES for i in items) else "rgb"


def _to_gray8(im: Image.Image) -> np.ndarray:
    if im.mode in _WIDE_GRAY:
        a = np.asarray(im)
        if im.mode == "F":
            return np.clip(a, 0, 255).astype(np.uint8)
        # 16-bit samples (Pillow opens 16-bit PNG as I;16 or I): keep the top byte.
        return (np.clip(a, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
    return np.asarray(im.convert("L"))


def _decode(item: Item, gray: bool, size: tuple[int, int], resize: bool, first: Item | None):
    """(H, W) for grayscale, (H, W, 3) for rgb, at size (width, height)."""
    try:
        with _open(item) as im:
            if im.size != size and not resize:
                raise fail(item.say(f"is {im.size[0]}x{im.size[1]} (width x height), but "
                                    f"images are expected to be {size[0]}x{size[1]} like "
                                    f"'{first.member or first.file}'"), item.file,
                           hint="set data.image_size: [height, width] to resize every image")
            if gray or im.mode in _WIDE_GRAY:
                a = _to_gray8(im)
                if a.shape[::-1] != size:
                    a = np.asarray(Image.fromarray(a).resize(size, Image.BILINEAR))
                return a if gray else a[..., np.newaxis]
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")  # what Pillow wants before dropping palette alpha
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            if rgb.size != size:
                rgb = rgb.resize(size, Image.BILINEAR)
            return np.asarray(rgb)
    except Exception as e:  # noqa: BLE001 - our own error passes; decoders raise anything
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
            a = _decode(items[i], gray, size, resize, first)
            if gray:
                out[i, :, :, 0] = a
            else:
                out[i] = a  # a (H, W, 1) from 16-bit gray broadcasts to 3 channels

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

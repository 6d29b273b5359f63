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

from cnntrain.errors import BrokenImageError, CnntrainError

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


def _broken(item: Item, e: Exception) -> BrokenImageError:
    if isinstance(e, Image.DecompressionBombError):
        return BrokenImageError(item.say(f"is too large to decode safely ({e})"), file=item.file,
                                hint="resize the image; Pillow's decompression-bomb limit guards "
                                     "against malicious files")
    if isinstance(e, FileNotFoundError):   # listed, then gone
        return BrokenImageError(item.say("no longer exists"), file=item.file,
                                hint="put the file back, or run the command again without it")
    return BrokenImageError(item.say(f"cannot be decoded as an image ({type(e).__name__}: {e})"),
                            file=item.file, hint="remove or replace the file; it is truncated, corrupt, "
                                                 "or not the format its extension says")


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


def readable(items: list[Item]):
    """(item, mode, (width, height) as shown) of each one whose header reads, lazily; decode_all
    names the rest."""
    for item in items:
        try:
            yield (item, *probe(item))
        except BrokenImageError:
            continue


def guess_color_mode(items: list[Item]) -> str:
    """"grayscale" if every readable one of these (headers only) is single-channel, else "rgb"."""
    return "grayscale" if all(mode in GRAY_MODES for _, mode, _ in readable(items)) else "rgb"


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


def _aspect_box(width: int, height: int, size: tuple[int, int], rule: str):
    """The (left, top, right, bottom) window that `rule` resizes to `size`: Keras' own arithmetic
    (keras.ops.image.resize's crop_to_aspect_ratio / pad_to_aspect_ratio), so a spec means what
    image_dataset_from_directory means. For pad the window reaches outside the image."""
    tw, th = size
    if rule == "crop":
        ch = max(min(height, int(float(width * th) / tw)), 1)
        cw = max(min(width, int(float(height * tw) / th)), 1)
        top, left = int(float(height - ch) / 2), int(float(width - cw) / 2)
        return left, top, left + cw, top + ch
    ph = max(height, int(float(width * th) / tw))
    pw = max(width, int(float(height * tw) / th))
    top, left = int(float(ph - height) / 2), int(float(pw - width) / 2)
    return -left, -top, pw - left, ph - top


def resized(im: Image.Image, size: tuple[int, int], rule: str = "stretch") -> Image.Image:
    """`im` at size (width, height) by data.resize's `rule` (see to_pixels); unchanged if it fits."""
    size = tuple(size)
    if im.size == size:
        return im
    if rule != "stretch":
        box = _aspect_box(*im.size, size, rule)
        if box != (0, 0, *im.size):
            im = im.crop(box)   # a window reaching outside the image is filled with zeros: black
    return im.resize(size, Image.Resampling.BILINEAR)


def to_pixels(im: Image.Image, channels: int, size: tuple[int, int] | None,
              resize: str = "stretch") -> np.ndarray:
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
    - the image is resized (bilinear) only if its size differs (size None: never), by `resize` (data.resize):
      stretch to the size whatever its aspect ratio, crop the largest centred window of the
      size's aspect ratio first, or pad the short side evenly with black (Keras' fill value 0)
      first, as image_dataset_from_directory's crop_to_aspect_ratio / pad_to_aspect_ratio do.
    """
    try:
        im = ImageOps.exif_transpose(im) or im
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        pass     # a broken EXIF block: keep the pixels as stored
    im = _flatten_alpha(_to_8bit(im)).convert("L" if channels == 1 else "RGB")
    if size is not None:
        im = resized(im, size, resize)
    a = np.array(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def _decode(item: Item, gray: bool, size: tuple[int, int], resize: str | None, first: Item | None):
    """((H, W, 1) for grayscale or (H, W, 3) for rgb at size (width, height), whether the file is
    single-channel)."""
    try:
        with _open(item) as im:
            shown = _upright_size(im)
            if shown != size and not resize:
                raise fail(item.say(f"is {shown[0]}x{shown[1]} (width x height), but "
                                    f"images are expected to be {size[0]}x{size[1]} like "
                                    f"'{first.member or first.file}'"), item.file,
                           hint="set data.image_size: [height, width] to resize every image")
            return to_pixels(im, 1 if gray else 3, size, resize or "stretch"), im.mode in GRAY_MODES
    except Exception as e:  # our own error passes; decoders raise anything
        if isinstance(e, CnntrainError):
            raise
        raise _broken(item, e) from e


def decode_one(item: Item, gray: bool, size: tuple[int, int], resize: str | None, reference: Item) -> np.ndarray:
    """One item's pixels as decode_all decodes them (data.cache: none decodes each batch so)."""
    return _decode(item, gray, size, resize, reference)[0]


def workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


SHOWN_BROKEN = 20   # unreadable files named in one error; the rest are counted


@dataclass
class Decoded:
    """The decoded images of a list of items; `kept` the indices of the items in `pixels` (None:
    all of them), `skipped` the names of those data.on_broken: skip left out."""
    pixels: np.ndarray
    kept: np.ndarray | None
    skipped: list[str]


class InMemory:
    """Where decode_all puts pixels by default: one array, each block a view into it."""

    def __init__(self, shape):
        self.array = np.empty(shape, dtype=np.uint8)

    def block(self, lo: int, hi: int) -> np.ndarray:
        return self.array[lo:hi]

    def put(self, lo: int, block: np.ndarray) -> None:
        pass   # written in place

    def keep(self, kept: np.ndarray | None) -> np.ndarray:
        out = self.array
        if kept is None:
            return out
        for j, i in enumerate(kept):   # in place: a second array would double the peak memory
            if i != j:
                out[j] = out[i]
        return out[:len(kept)]


class Discard(InMemory):
    """Pixels decoded only to check every file (data.cache: none decodes them again when read)."""

    def __init__(self, shape):
        self.shape = shape

    def block(self, lo: int, hi: int) -> np.ndarray:
        return np.empty((hi - lo, *self.shape[1:]), np.uint8)

    def keep(self, kept):
        return None


@dataclass(frozen=True)
class Output:
    """Where decoded pixels go and who hears how far the decode is. `into(split, shape)` gives a
    target with block(lo, hi), put(lo, block) and keep(kept or None: all) (InMemory, or rows.Writer
    writing the cache file); `later`: the pixels are checked, then dropped (Discard), to be decoded
    again each time they are read. `progress` has start(total), advance(count) and done(), called
    from the decoding threads."""
    into: object = None
    progress: object = None
    later: bool = False

    def target(self, split: str, shape):
        if self.later:
            return Discard(shape)
        return InMemory(shape) if self.into is None else self.into(split, shape)


IN_MEMORY = Output()   # the default: one array in memory, nobody told


# A block's rows are decoded into one buffer and then written: its bytes bound the memory each
# decoding thread holds, whatever the number of images.
BLOCK_BYTES = 8 << 20


def decode_all(items: list[Item], color_mode: str, size: tuple[int, int], resize: str | None,
               reference: Item, *, source: str, on_broken: str = "error",
               guessed: bool = False, target=None, progress=None) -> Decoded:
    """All items as uint8 (N, H, W, C) at size (width, height), by the data.resize rule `resize`,
    into `target` (an Output's; default one array in memory), block by block on every core.
    Without a resize rule, an image of another size is an error naming `reference`, whose size it is.
    Every unreadable file is found before one error names them all (on_broken: error) or they
    are left out (skip). A `guessed` color mode meeting both grayscale and colour files is an
    error whose hint names data.color_mode: the guess would have converted some of them."""
    gray = color_mode == "grayscale"
    shape = (len(items), size[1], size[0], 1 if gray else 3)
    out = target if target is not None else InMemory(shape)
    single = np.zeros(len(items), dtype=bool)
    broken: dict[int, CnntrainError] = {}
    stop = threading.Event()

    def run(lo: int, hi: int):
        block = out.block(lo, hi)
        for i in range(lo, hi):
            if stop.is_set():
                return
            try:
                block[i - lo], single[i] = _decode(items[i], gray, size, resize, reference)
            except BrokenImageError as e:
                broken[i] = e
        out.put(lo, block)
        if progress is not None:
            progress.advance(hi - lo)

    n, k = len(items), workers()
    row_bytes = int(np.prod(shape[1:]))
    step = max(1, min(max(64, n // (k * 16)), BLOCK_BYTES // row_bytes))
    blocks = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    if n < 256 or k == 1:
        for lo, hi in blocks:
            run(lo, hi)
    else:
        pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix="cnntrain-decode")
        try:
            futures = [pool.submit(run, lo, hi) for lo, hi in blocks]
            for f in futures:
                try:
                    f.result()
                except BaseException:
                    stop.set()
                    raise
        finally:
            stop.set()   # a Ctrl-C here leaves the queued blocks undone, not decoded in the background
            pool.shutdown(wait=True, cancel_futures=True)
    if broken and on_broken != "skip":
        raise _all_broken(items, broken, source)
    kept = None
    if broken:
        kept = np.array([i for i in range(n) if i not in broken], dtype=np.int64)
        single = single[kept]
    pixels = out.keep(kept)
    if guessed and single.any() and not single.all():
        raise _mixed(items if kept is None else [items[i] for i in kept], single, color_mode, source)
    return Decoded(pixels, kept, [items[i].name for i in sorted(broken)])


_SKIP = "or set data.on_broken: skip to train without them"


def _all_broken(items, broken: dict, source: str) -> CnntrainError:
    if len(broken) == 1:   # the file itself is named, as predict names a file it cannot read
        (e,) = broken.values()
        return BrokenImageError(e.message, file=e.file, hint=f"{e.hint}; {_SKIP.replace('them', 'it')}")
    shown = sorted(broken)[:SHOWN_BROKEN]
    # An archive member's message names it already; a file's names it only in its `file`.
    lines = [f"  {broken[i].message}" if items[i].member else f"  {items[i].name}: {broken[i].message}"
             for i in shown]
    if len(broken) > len(shown):
        lines.append(f"  ... and {len(broken) - len(shown):,} more")
    return fail(f"{len(broken):,} of {len(items):,} images cannot be decoded:\n" + "\n".join(lines), source,
                hint=f"remove or replace them (truncated, corrupt, or not the format their extension says), {_SKIP}")


def _mixed(items, single, color_mode: str, source: str) -> CnntrainError:
    grays = int(single.sum())
    g, c = items[int(np.flatnonzero(single)[0])], items[int(np.flatnonzero(~single)[0])]
    return fail(f"mixes {grays:,} grayscale and {len(items) - grays:,} colour images (e.g. '{g.name}' "
                f"and '{c.name}'); the first class alone made them all {color_mode}", source,
                hint="set data.color_mode: rgb (grayscale images get three equal channels) or "
                     "grayscale (colour images become luma) to say which")

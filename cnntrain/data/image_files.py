"""Reading the user's own image files for predict and activations (Pillow + numpy, no TensorFlow).

`read_image` turns any common image file into the uint8 (H, W, C) array a model
was trained on: its first frame, through `decode.to_pixels`, the very conversion the
training images went through (see its rules). Nothing else is applied: no
normalization (the model holds its own), no inversion.
"""
from __future__ import annotations

import glob
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnntrain.errors import CnntrainError, not_regular

from .decode import IMAGE_EXTENSIONS, to_pixels
from .rows import Lazy

IMAGE_SUFFIXES = IMAGE_EXTENSIONS
_GLOB_CHARS = re.compile(r"[*?\[]")
# Our own max_pixels check is the limit, so Pillow's softer warning (above
# Image.MAX_IMAGE_PIXELS) is noise; its hard limit (twice that) still raises.
# A module-level filter, not catch_warnings(): predict reads images in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_BOMB_HINT = ("shrink the image first (a huge declared size can also be a decompression bomb: "
              "a small file that expands to gigabytes)")


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _images_under(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file() and _is_image_name(p)), key=str)


def expand_paths(args: list[str]) -> tuple[list[Path], list[CnntrainError]]:
    """Files, folders (searched recursively for image suffixes, sorted) and glob patterns.

    A file named directly is kept whatever its suffix; a folder or pattern
    contributes image files only. Anything that yields no image is reported in
    the second list and the rest still go ahead. Duplicates are dropped, order kept.
    """
    files: list[Path] = []
    errors: list[CnntrainError] = []
    for arg in args:
        path = Path(arg).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = _images_under(path)
            if not found:
                errors.append(CnntrainError(
                    "folder holds no image files", file=arg,
                    hint=f"images are found by suffix: {', '.join(IMAGE_SUFFIXES)}"))
            files.extend(found)
        elif not_regular(path):
            errors.append(_not_an_image(path))
        elif _GLOB_CHARS.search(arg):
            matched = [Path(m) for m in sorted(glob.glob(os.path.expanduser(arg), recursive=True))]
            found = []
            for m in matched:
                if m.is_dir():
                    found.extend(_images_under(m))
                elif m.is_file() and _is_image_name(m):
                    found.append(m)
            if not found:
                what = "no files" if not matched else "no image files"
                errors.append(CnntrainError(
                    f"pattern matches {what}", file=arg,
                    hint="quote the pattern so the shell does not expand it, and check the folder "
                         "(use ** with a / to search sub-folders)"))
            files.extend(found)
        else:
            errors.append(CnntrainError("no such file or folder", file=arg,
                                        hint="check the path (relative paths start at the current folder)"))
    seen: set[str] = set()
    unique = []
    for f in files:
        key = os.path.normcase(os.path.abspath(f))
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, errors


def _error(message: str, path, hint: str) -> CnntrainError:
    return CnntrainError(message, file=str(path), hint=hint)


def _not_an_image(path) -> CnntrainError:
    return _error(f"is {not_regular(path)}, not a regular file; images are read from regular files only",
                  path, "copy the image to a file and give its path")


def read_image(path, *, height: int | None, width: int | None, channels: int,
               max_pixels: int = 50_000_000, resize: str = "stretch") -> np.ndarray:
    """One image file as uint8 (height, width, channels), or at its own size when height and width
    are None; see the module docstring for the rules. `resize` is the model's data.resize:
    stretch, pad or crop to another aspect ratio."""
    if channels not in (1, 3):
        raise CnntrainError(f"cannot read images for a model with {channels} channels",
                            hint="models take 1 (grayscale) or 3 (RGB) channels")
    path = Path(path)
    if path.is_dir():
        raise _error("is a folder, not an image file", path, "name the image files, or pass the folder "
                     "to the command to read every image in it")
    if not_regular(path):   # opening a FIFO would block until something writes to it
        raise _not_an_image(path)
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise _error("no such file", path, "check the path") from None
    except PermissionError:
        raise _error("cannot read file: permission denied", path, "check the file's permissions") from None
    except OSError as exc:
        raise _error(f"cannot read file: {exc.strerror or exc}", path, "check the path") from None
    if size == 0:
        raise _error("empty file (0 bytes)", path, "the file has no content; copy or save it again")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise _error(f"image too large: {w * h:,} pixels declared ({w}x{h}), "
                             f"limit {max_pixels:,}", path, _BOMB_HINT)
            img.seek(0)
            img.load()           # decode everything now, so a truncated file fails here
            return to_pixels(img, channels, None if height is None else (width, height), resize)
    except CnntrainError:
        raise
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(found.group(1)):,} pixels declared, " if found else ""
        limit = min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS) if Image.MAX_IMAGE_PIXELS else max_pixels
        raise _error(f"image too large: {declared}limit {limit:,}", path, _BOMB_HINT) from None
    except UnidentifiedImageError:
        raise _error("not an image (or a format Pillow cannot read)", path,
                     f"use one of {', '.join(IMAGE_SUFFIXES)}") from None
    except PermissionError:
        raise _error("cannot read file: permission denied", path, "check the file's permissions") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _error("truncated or corrupt image data", path,
                     f"the file is damaged or incomplete (Pillow: {exc}); copy or save it again") from None


def resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A uint8 (H, W, C) array at (height, width), resized as read_image resizes a file."""
    a = np.asarray(image)
    return to_pixels(Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a), a.shape[-1], (width, height))


def _gray(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    return a.mean(axis=-1) if a.ndim == 3 else a


def border(gray: np.ndarray) -> np.ndarray:
    """The outer ring of an (..., H, W) array, about 1/14 of the side (2 pixels of 28)."""
    h, w = gray.shape[-2:]
    t = max(1, min(h, w) // 14)
    return np.concatenate([gray[..., :t, :].reshape(*gray.shape[:-2], -1),
                           gray[..., h - t:, :].reshape(*gray.shape[:-2], -1),
                           gray[..., t:h - t, :t].reshape(*gray.shape[:-2], -1),
                           gray[..., t:h - t, w - t:].reshape(*gray.shape[:-2], -1)], axis=-1)


def looks_inverted(image: np.ndarray, background: str) -> bool:
    """Whether a uint8 image's background is the opposite of the model's training images.

    The rule: the border (the outer ~1/14 of each side) is the ground, its median the
    ground's level; the ink is whichever extreme of the image lies further from that level.
    For a "dark" model (white digit on black, like MNIST) an image is inverted when its ink
    is darker than its ground: dark strokes on paper of any shade, also a grey sheet below
    mid-grey, which a fixed threshold (a ground above 127) took for a dark ground. For a
    "light" model the same the other way round. A plain image has no ink: never inverted.
    """
    if background not in ("dark", "light"):
        raise CnntrainError(f"unknown background {background!r}", hint="use 'dark' or 'light'")
    gray = _gray(image)
    ground = float(np.median(border(gray)))
    darker, lighter = ground - float(gray.min()), float(gray.max()) - ground
    return darker > lighter if background == "dark" else lighter > darker


def invert(image: np.ndarray) -> np.ndarray:
    """255 - image for uint8 (the maximum minus the image for other integer types; 1 - image
    for floats in [0, 1], else 255 - image)."""
    a = np.asarray(image)
    if np.issubdtype(a.dtype, np.integer):
        return (np.iinfo(a.dtype).max - a).astype(a.dtype)
    top = 1.0 if a.size and float(a.max()) <= 1.0 else 255.0
    return (top - a).astype(a.dtype)


def background_of(x_train: np.ndarray) -> str | None:
    """'dark' or 'light' when the training images are grayscale on one uniform background near
    black or near white (MNIST, Fashion-MNIST: digits or things on a plain ground), else None.

    Only then does an image with the opposite background mean a picture of the same kind of
    thing on paper of the other colour, which inverting fixes; a colour photograph's border
    says nothing of the kind (40% of CIFAR-10's test images have a "light" border). The
    border is the outer ~1/14 of each side; at least half of its pixels, over up to 2,000
    images evenly spaced, must lie within a tenth of the range of black or of white.
    """
    x = x_train if isinstance(x_train, Lazy) else np.asarray(x_train)   # on disk: only the sample is read
    if x.ndim not in (3, 4) or x.shape[0] == 0:
        raise CnntrainError(f"expected a stack of images (N, H, W[, C]), got shape {x.shape}",
                            hint="pass the training images array")
    if x.ndim == 4 and x.shape[-1] != 1:
        return None
    sample = x[:: max(1, x.shape[0] // 2000)].astype(np.float64)   # sample first: x can be large
    if sample.ndim == 4:
        sample = sample[..., 0]
    if np.issubdtype(x.dtype, np.integer):
        top = 255.0 if x.dtype == np.uint8 else float(np.iinfo(x.dtype).max)
    else:
        top = 1.0 if float(sample.max()) <= 1.0 else 255.0
    ring = border(sample)
    for name, ground in (("dark", 0.0), ("light", top)):
        if np.mean(np.abs(ring - ground) <= top / 10) >= 0.5:
            return name
    return None

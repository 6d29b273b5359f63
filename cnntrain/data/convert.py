"""color_mode and image_size for data that arrives as arrays (npz, IDX, CIFAR
batches), so a spec means the same thing whichever format held the data."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from .decode import resized, workers

_CHUNK = 4096  # images per step of the RGB->L sum, to bound its uint32 temporary


def to_gray(x: np.ndarray) -> np.ndarray:
    """RGB to L with Pillow's own integer weights (ITU-R 601-2 luma), so arrays
    and decoded files give identical pixels."""
    out = np.empty(x.shape[:-1] + (1,), dtype=np.uint8)
    for lo in range(0, len(x), _CHUNK):
        c = x[lo:lo + _CHUNK].astype(np.uint32)
        out[lo:lo + _CHUNK, ..., 0] = (c[..., 0] * 19595 + c[..., 1] * 38470
                                       + c[..., 2] * 7471 + 0x8000) >> 16
    return out


def resize(x: np.ndarray, height: int, width: int, rule: str = "stretch") -> np.ndarray:
    """Bilinear, per image with Pillow (as decoded files are, by the same data.resize rule), on a
    thread pool."""
    out = np.empty((len(x), height, width, x.shape[-1]), dtype=np.uint8)

    def run(lo: int, hi: int):
        for i in range(lo, hi):
            img = x[i, :, :, 0] if x.shape[-1] == 1 else x[i]
            r = np.asarray(resized(Image.fromarray(img), (width, height), rule))
            out[i] = r[..., np.newaxis] if x.shape[-1] == 1 else r

    step = max(256, len(x) // (workers() * 8) + 1)
    with ThreadPoolExecutor(max_workers=workers()) as pool:
        for f in [pool.submit(run, lo, min(lo + step, len(x))) for lo in range(0, len(x), step)]:
            f.result()
    return out


def apply(x: np.ndarray | None, image_size, color_mode, rule: str = "stretch") -> np.ndarray | None:
    if x is None:
        return None
    if color_mode == "grayscale" and x.shape[-1] == 3:
        x = to_gray(x)
    elif color_mode == "rgb" and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if image_size is not None and tuple(x.shape[1:3]) != tuple(image_size):
        x = resize(x, *image_size, rule)
    return x

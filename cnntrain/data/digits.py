"""A user's own picture of a digit read the way MNIST itself was made (Pillow + numpy, no TensorFlow).

MNIST's digits were cropped to their ink, scaled (anti-aliased, keeping the aspect ratio)
so the longer side fits a 20x20 box, and placed in the 28x28 field so that their centre of
mass is its centre. A model trained on them has hardly seen a digit anywhere else or at
another size: a 7 drawn on a 300x200 canvas and stretched to 28x28 came out a 4, a 3 in a
corner a 6, both right once cropped and centred. Here the same steps, for any input size:
the box is 20/28 of the model's input height and width.

Before the crop the ground (the border's median level, as the inversion rule takes it) is
made black and the strongest ink white, so a grey sheet of paper or a faint pencil reads like
MNIST's black ground and white strokes rather than as a dim, almost blank image.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .image_files import border

BOX = 20 / 28
# Ink must stand this far (of 255) from the ground, else the picture is taken as blank
# (JPEG noise on plain paper reaches about 10-20).
MIN_CONTRAST = 32
# Of the range from the ground to the strongest ink, the part taken as the ground's own
# texture and noise, so the crop does not reach out to a speck or a shadow.
GROUND_SHARE = 0.2


def mnist_box(height: int, width: int) -> tuple[int, int]:
    """The box a digit's longer side is scaled into: 20x20 for 28x28."""
    return max(1, round(height * BOX)), max(1, round(width * BOX))


def ink(image: np.ndarray, background: str) -> np.ndarray | None:
    """Float ink in [0, 1] (0 the ground, 1 the strongest ink) of a uint8 (H, W, 1) image whose
    ground is `background` ("dark": light strokes, "light": dark ones), or None when nothing
    stands out from the ground by MIN_CONTRAST."""
    a = np.asarray(image, dtype=np.float32)[..., 0]    # float32: a phone photo is 12 million pixels
    if background == "light":
        a = 255.0 - a
    ground = float(np.median(border(a)))
    peak = float(a.max())
    if peak - ground < MIN_CONTRAST:
        return None
    level = ground + GROUND_SHARE * (peak - ground)
    return np.clip((a - np.float32(level)) / np.float32(peak - level), 0.0, 1.0)


def _scaled(crop: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """crop scaled, aspect kept, until its longer side fills the box (Lanczos: anti-aliased)."""
    h, w = crop.shape
    factor = min(box[0] / h, box[1] / w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if size == (w, h):
        return crop
    out = Image.fromarray(np.ascontiguousarray(crop, np.float32)).resize(size, Image.Resampling.LANCZOS)   # mode F
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def _place(length: int, field: int, mass_at: float) -> int:
    """Where a patch starts so that its centre of mass is the field's centre, inside the field."""
    start = int(np.floor((field - 1) / 2 - mass_at + 0.5))
    return min(max(start, 0), field - length)


def centred(image: np.ndarray, height: int, width: int, background: str) -> np.ndarray | None:
    """A uint8 (H, W, 1) picture of a digit, its ground already the model's `background`, as a
    uint8 (height, width, 1) MNIST-style image: the ground black (white for a "light" model),
    cropped to the ink, the longer side scaled into mnist_box, placed with its centre of mass at
    the centre (moved no further than keeps it whole). None when no ink stands out."""
    strength = ink(image, background)
    if strength is None:
        return None
    rows = np.flatnonzero(strength.any(axis=1))
    cols = np.flatnonzero(strength.any(axis=0))
    patch = _scaled(strength[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], mnist_box(height, width))
    mass = float(patch.sum(dtype=np.float64))
    if mass <= 0:      # a speck that the scaling smoothed away
        return None
    ys, xs = np.indices(patch.shape)
    top = _place(patch.shape[0], height, float((ys * patch).sum() / mass))
    left = _place(patch.shape[1], width, float((xs * patch).sum() / mass))
    field = np.zeros((height, width), np.float32)
    field[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
    out = np.rint(field * 255.0).astype(np.uint8)
    return (255 - out if background == "light" else out)[..., None]

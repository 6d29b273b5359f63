"""Classify image files with a saved model: read, maybe invert, predict in batches, top-k.

Files are decoded by a small thread pool one batch ahead of the model, so at most
two batches of decoded images are held at once however many files are given; and a batch
is smaller than --batch-size where the model's input is large (batch_for). An unreadable
file gives its own error and the others go on.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cnntrain.assess import tta as test_time
from cnntrain.assess.outputs import Scored, probability_model
from cnntrain.data import digits, image_files
from cnntrain.errors import CnntrainError
from cnntrain.spec.schema import INVERT_CHOICES
from cnntrain.loading.runners import resolve_and_load
from cnntrain.runs.model_file import class_names_of, input_shape_of



def top_classes(probabilities, class_names, k: int) -> list[dict]:
    """The k most probable classes, most probable first (ties: lower class index first)."""
    p = np.asarray(probabilities)
    order = np.argsort(-p, kind="stable")[:k]
    return [{"class": class_names[i], "probability": float(p[i])} for i in order]


def auto_background(metadata: dict, shape) -> str | None:
    """The background `--invert auto` matches, or None where it must never invert: a colour
    model, or training data without one uniform background (fit records none then)."""
    background = metadata.get("background")
    return background if background in ("dark", "light") and shape[2] == 1 else None


def inverted_note(file, background: str | None) -> str:
    """What predict and activations say of an image they inverted."""
    ground = {"dark": "light", "light": "dark"}.get(background or "")
    what = f"has a {ground} background" if ground else "was inverted as asked"
    return f"note: {file} {what}; inverted it to match the training images (--invert no to keep it)"


# The images of one batch as the model is fed them (float32, every test-time view) take at most
# this, so two batches in flight stay within a few hundred MB: at the 4096x4096 RGB input bound one
# image is 201 MB, and a batch of --batch-size 256 of them would have been 51 GB. Inputs up to
# 224x224 RGB keep batches of 256.
BATCH_BYTES = 256 * 2**20


def batch_for(shape, batch_size: int, tta: str = test_time.NONE) -> int:
    """Images per batch: `batch_size`, fewer when that many images of `shape` (H, W, C), as float32
    with their test-time views, would take over BATCH_BYTES; at least one."""
    h, w, c = (int(d) for d in shape)
    per_image = h * w * c * np.dtype(np.float32).itemsize * len(test_time.VIEWS[tta])
    return max(1, min(int(batch_size), BATCH_BYTES // per_image))


# Below this the model gives its other classes together more than its top one: if its
# probabilities were calibrated, the answer would more likely be wrong than right.
LOW_CONFIDENCE = 0.5


def low_confidence_note(row: dict, classes: int) -> str:
    """What predict says of an image whose top class is under LOW_CONFIDENCE."""
    top = row["top"][0]
    return (f"note: {row['file']}: low confidence ({top['class']} {top['probability']:.4f}, under "
            f"{LOW_CONFIDENCE}); the image may not show any of the {classes} classes the model knows")


# More low-confidence images than this in one call get one note for all: a folder of a thousand
# photos unlike the training images would otherwise print a thousand notes above its table.
FEW_LOW_CONFIDENCE_NOTES = 3


def low_confidence_summary(count: int, files: int, classes: int) -> str:
    """predict's one note for more than FEW_LOW_CONFIDENCE_NOTES low-confidence images."""
    return (f"note: {count:,} of {files:,} images have low confidence (a top probability under {LOW_CONFIDENCE}); "
            f"they may not show any of the {classes} classes the model knows (--json marks each: low_confidence)")


def read_for_model(path, shape, mode: str, background: str | None,
                   resize: str = "stretch") -> tuple[np.ndarray, bool]:
    """One file as the model is fed it, for predict and activations alike: read, converted,
    inverted by `mode` (auto: when its background is the opposite of `background`) and brought
    to the input size. (image, inverted)

    A model trained on one plain ground (`background` not None: MNIST-like) gets a picture of
    another size as MNIST was made (digits.centred: cropped to the ink, scaled into the 20/28
    box, centred by mass); one already at the input size is taken as it is, like the training
    images it may be one of. Other models get the picture resized by the model's data.resize
    rule (its metadata's `resize`: stretch, pad or crop), as training resized its images."""
    h, w, c = shape
    own_size = background is not None     # the digit is found in the picture as it is
    image = image_files.read_image(path, height=None if own_size else h, width=None if own_size else w,
                                   channels=c, resize=resize)
    flip = mode == "yes" or (mode == "auto" and background is not None
                             and image_files.looks_inverted(image, background))
    if flip:
        image = image_files.invert(image)
    if image.shape[:2] != (h, w):   # own_size only
        digit = digits.centred(image, h, w, background)
        image = digit if digit is not None else image_files.resized(image, h, w)
    return image, bool(flip)


def _decode(path: Path, shape, mode: str, background: str | None, resize: str):
    """(image, inverted) or a CnntrainError; never raises, so one bad file stops nothing."""
    try:
        return read_for_model(path, shape, mode, background, resize)
    except CnntrainError as exc:
        return exc
    except Exception as exc:  # an unexpected decoder failure is still this file's error
        # MemoryError has no text: its name is the reason, never an empty "cannot read image: "
        return CnntrainError(f"cannot read image: {str(exc).strip() or type(exc).__name__}", file=str(path))


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict_arrays(scored: Scored, batch: np.ndarray, tta: str = "none") -> np.ndarray:
    """Class probabilities for uint8 (N, H, W, C) images, fed as float32 0-255 like training;
    with a tta, each image's the weighted mean of its views' (one call on the K x N images)."""
    x = test_time.with_views(batch, tta)
    out = scored.model.predict_on_batch(np.asarray(x, dtype=np.float32))
    return test_time.mean_of_views(np.asarray(out[0] if scored.logits else out), tta)


def predict_files(inputs: list[str], *, target=None, runs_root="runs", top_k=3, invert="auto",
                  batch_size=256, unsafe=False, tta=None) -> tuple[list[dict], list[CnntrainError], dict]:
    """Rows [{"file", "top": [{"class", "probability"}], "inverted", "low_confidence"}] in input order,
    the per-file errors, and {"model", "classes", "tta", ...}. `tta` None: the model's fit.tta."""
    if invert not in INVERT_CHOICES:
        raise CnntrainError(f"unknown invert choice {invert!r}",
                            hint="--invert is auto (only images whose background is the opposite of "
                                 "the training images), yes or no")
    if int(batch_size) < 1:
        raise CnntrainError(f"batch size must be at least 1, got {batch_size}")
    paths, errors = image_files.expand_paths([str(a) for a in inputs])
    if not paths:   # nothing to predict: said before the seconds of loading a model (and TensorFlow)
        return [], errors, {"model": None, "classes": None, "files": 0, "predicted": 0, "inverted": 0,
                            "tta": tta, "note": None, "top_k": int(top_k)}
    model, metadata, model_file, _run = resolve_and_load(target, runs_root, unsafe=unsafe)  # also .tflite, .onnx
    names = class_names_of(model, metadata)
    shape = input_shape_of(model, metadata)
    if shape[2] not in (1, 3):
        raise CnntrainError(f"the model takes {shape[2]} channels; image files give 1 (grayscale) or 3 (RGB)",
                            file=str(model_file))
    scored = probability_model(model, len(names))
    tta = test_time.of_model(tta, metadata)
    background = auto_background(metadata, shape)
    resize = metadata.get("resize", "stretch")
    k = max(1, min(int(top_k), len(names)))
    info = {"model": str(model_file), "classes": len(names), "input_shape": list(shape),
            "background": background, "files": len(paths), "note": scored.note,
            "tta": tta, "top_k": k}

    rows: list[dict] = []
    chunks = list(_chunks(paths, batch_for(shape, batch_size, tta)))
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnntrain-read") as pool:
        def submit(chunk):
            return [(p, pool.submit(_decode, p, shape, invert, background, resize)) for p in chunk]

        pending = submit(chunks[0]) if chunks else None
        for i in range(len(chunks)):
            current = pending
            # Decode the next batch while the model works on this one.
            pending = submit(chunks[i + 1]) if i + 1 < len(chunks) else None
            good, flags, files = [], [], []
            for path, future in current:
                result = future.result()
                if isinstance(result, CnntrainError):
                    errors.append(result)
                    continue
                good.append(result[0])
                flags.append(result[1])
                files.append(path)
            if not good:
                continue
            probs = predict_arrays(scored, np.stack(good), tta)
            for path, flag, p in zip(files, flags, probs):
                rows.append({"file": str(path), "top": top_classes(p, names, k), "inverted": flag,
                             "low_confidence": bool(p.max() < LOW_CONFIDENCE)})
            del good
    info["predicted"] = len(rows)
    info["inverted"] = sum(1 for r in rows if r["inverted"])
    info["low_confidence"] = sum(1 for r in rows if r["low_confidence"])
    return rows, errors, info

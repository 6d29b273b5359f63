"""Model files: model.keras with our metadata inside, loaded safely; which file a RUN or MODEL argument means.

The metadata (class names, input shape, preprocessing notes) is a JSON member, cnntrain.json,
inside Keras' own zip: plain `keras.models.load_model` still loads the file.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.runs import atomic
from cnntrain.runs.folder import resolve_run

METADATA = "cnntrain.json"   # stored inside model.keras, beside Keras' own config.json


def save_model(model, path, metadata: dict):
    """`model.save()` plus our metadata (class names, preprocessing notes) inside the same zip.

    Keras' loader ignores the extra member, so plain `keras.models.load_model` still works.
    """
    try:
        with atomic.atomic_path(path, suffix=".keras") as tmp:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA, json.dumps(metadata, indent=2, default=atomic.json_default))
    except OSError as exc:
        raise atomic.write_error(path, exc) from None


def read_metadata(path) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA not in archive.namelist():
                return {}
            return json.loads(archive.read(METADATA))
    except FileNotFoundError:
        raise CnntrainError("model file not found", file=str(path)) from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CnntrainError(f"not a readable .keras model file ({exc})", file=str(path),
                            hint="model files are the model.keras / best.keras of a run folder") from None


def load_model(path, *, unsafe: bool = False):
    """(model, metadata). Keras' safe mode stays on unless `unsafe`: a Lambda layer's code never runs."""
    from cnntrain.backend import keras

    metadata = read_metadata(path)
    try:
        model = keras.models.load_model(path, safe_mode=not unsafe, compile=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError ... for bad files
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = None
        if not unsafe and ("safe_mode" in str(exc) or "Lambda" in str(exc)):
            # Keras' own text tells a Python programmer about safe_mode=False; say it for the command line.
            text = "it contains Python code (a Lambda layer), which is not run unless you trust the file"
            hint = "the file contains code (a Lambda layer); load it only if you trust it, with --unsafe"
        raise CnntrainError(f"cannot load the model: {text}", file=str(path), hint=hint) from None
    return model, metadata


def resolve_model(target: str | None, runs_root="runs") -> tuple[Path, Path | None]:
    """(model file, run folder or None) for a run folder / run name, a .keras file, or None (newest finished run)."""
    if target is not None:
        path = Path(target)
        if path.is_file() or path.suffix == ".keras":
            if not path.is_file():
                raise CnntrainError("model file not found", file=str(path))
            return path, None
        if path.is_dir() and (path / "model.keras").is_file():
            return path / "model.keras", path
    run = resolve_run(target, runs_root, need_model=True)
    model_file = run / "model.keras"
    if not model_file.is_file():
        hint = "the run has not finished; train it to the end with 'cnntrain fit --resume'"
        if (run / "best.keras").is_file():
            hint += f", or give its best model: {run / 'best.keras'}"
        raise CnntrainError("the run folder holds no model.keras", file=str(run), hint=hint)
    return model_file, run


def default_class_names(num_classes: int) -> list[str]:
    return [str(i) for i in range(int(num_classes))]


def class_names_of(model, metadata: dict) -> list[str]:
    """The metadata's class names, checked against the model's output width; "0".."N-1" without."""
    n = int(model.output_shape[-1])
    names = (metadata or {}).get("class_names")
    if not names:
        return default_class_names(n)
    names = [str(c) for c in names]
    if len(names) != n:
        raise CnntrainError(f"the model outputs {n} classes but its metadata names {len(names)}",
                            hint="the model file was altered after training; retrain or re-save it")
    return names


def input_shape_of(model, metadata: dict) -> tuple[int, int, int]:
    shape = (metadata or {}).get("input_shape")
    if not shape:
        shape = model.input_shape[1:]
    shape = tuple(shape)
    if len(shape) != 3 or any(d is None for d in shape):
        raise CnntrainError(f"the model takes inputs shaped {shape}; expected a fixed (height, width, channels)")
    return tuple(int(d) for d in shape)


def check_input_shape(model, metadata, x_shape):
    want = input_shape_of(model, metadata)
    got = tuple(x_shape[1:]) if len(x_shape) == 4 else tuple(x_shape[1:]) + (1,)
    if got != want:
        raise CnntrainError(f"the images are {got} but the model takes {want}",
                            hint="evaluate on the data set (and image_size / color_mode) the model was trained with")

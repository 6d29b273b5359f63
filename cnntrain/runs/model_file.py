"""Model files: model.keras with our metadata inside, loaded safely; which file a RUN or MODEL argument means.

The metadata (class names, input shape, preprocessing notes) is a JSON member, cnntrain.json,
inside Keras' own zip: plain `keras.models.load_model` still loads the file.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from cnntrain.errors import CnntrainError, not_regular
from cnntrain.runs import atomic, schema
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


def save_weights(model, path):
    """`model.save_weights(path)`, the same file, made in memory and written by the atomic writer.

    h5py writing to a full disk reports the error from its C layer on every object it frees
    ("Exception ignored in h5py._objects.ObjectID.__dealloc__", with a traceback each) and then
    crashed the process (a segmentation fault, 4 times of 4). In memory, h5py never meets the disk.
    """
    try:
        data = _weights_in_memory(model)
    except (ImportError, AttributeError, TypeError):   # Keras moved its internals: its own writer, to disk
        with atomic.atomic_path(path, suffix=".weights.h5") as tmp:
            try:
                model.save_weights(tmp)
            except OSError as exc:
                raise atomic.write_error(path, exc) from None
        return
    atomic.write_bytes(path, data)


def _weights_in_memory(model) -> bytes:
    import io

    from keras.src.saving import saving_lib   # what model.save_weights does, with a BytesIO for the path

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    finally:
        store.close()
    return buffer.getvalue()


# The most each JSON member may inflate to: ours holds class names and a few settings (a few KB
# for a thousand classes), Keras' config.json the architecture (tens of KB for a large model).
# A member over these is refused before it is read: 1.6 MB of deflate can inflate to 1.5 GiB.
MAX_JSON_BYTES = {METADATA: 16 << 20, "config.json": 64 << 20, "metadata.json": 1 << 20}


def read_metadata(path) -> dict:
    """Our metadata from a .keras file, checked against its schema; every JSON member, ours and
    Keras', is checked first against its size limit, as the zip's directory declares it."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                most = MAX_JSON_BYTES.get(info.filename)
                if most is not None and info.file_size > most:
                    raise CnntrainError(f"member '{info.filename}' inflates to {info.file_size:,} bytes; a "
                                        f".keras file's {info.filename} is at most {most:,}, so this file "
                                        "is corrupt or malicious", file=str(path),
                                        hint="model files are the model.keras / best.keras of a run folder")
            if METADATA not in archive.namelist():
                return {}
            with archive.open(METADATA) as member:
                text = member.read(MAX_JSON_BYTES[METADATA] + 1)
    except FileNotFoundError:
        raise CnntrainError("model file not found", file=str(path)) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CnntrainError(f"not a readable .keras model file ({exc})", file=str(path),
                            hint="model files are the model.keras / best.keras of a run folder") from None
    where = f"{path}:{METADATA}"
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise schema.damaged(where, "", f"the metadata is not JSON ({str(exc)[:200]})") from None
    return schema.check(where, metadata, schema.METADATA)


def check_metadata(path, model, metadata: dict):
    """The metadata must describe this model: its real input shape and its number of outputs.
    The model's own shape is what is trusted; metadata that disagrees is a damaged file (it could
    otherwise make predict resize a small image to any size it says)."""
    where = f"{path}:{METADATA}"
    real = [None if d is None else int(d) for d in model.input_shape[1:]]
    if "input_shape" in metadata and metadata["input_shape"] != real:
        raise schema.damaged(where, "input_shape", f"is {metadata['input_shape']}, but the model takes {real}")
    if metadata.get("image_size") is not None and metadata["image_size"] != real[:2]:
        # evaluate resizes the data set's images to it: it must be the model's own size
        raise schema.damaged(where, "image_size", f"is {metadata['image_size']}, but the model takes {real[:2]}")
    outputs = int(model.output_shape[-1])
    if "class_names" in metadata and len(metadata["class_names"]) != outputs:
        raise schema.damaged(where, "class_names", f"names {len(metadata['class_names'])} classes, but the model "
                             f"outputs {outputs}")


def load_model(path, *, unsafe: bool = False):
    """(model, metadata). Keras' safe mode stays on unless `unsafe`: a Lambda layer's code never runs."""
    metadata = read_metadata(path)   # first: it also bounds what Keras will inflate
    from cnntrain.backend import keras

    try:
        model = keras.models.load_model(path, safe_mode=not unsafe, compile=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError ... for bad files
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = None
        if not unsafe and "vocabulary file" in str(exc):
            # Keras refuses a lookup layer's vocabulary outside the archive by this text alone (no type of its own).
            text = "a layer in it reads a vocabulary file outside the model file, which is not read unless you trust it"
            hint = "the file names a file elsewhere on this machine; load it only if you trust it, with --unsafe"
        elif not unsafe and ("safe_mode" in str(exc) or "Lambda" in str(exc)):
            # Keras' own text tells a Python programmer about safe_mode=False; say it for the command line.
            text = "it contains Python code (a Lambda layer), which is not run unless you trust the file"
            hint = "the file contains code (a Lambda layer); load it only if you trust it, with --unsafe"
        raise CnntrainError(f"cannot load the model: {text}", file=str(path), hint=hint) from None
    check_metadata(path, model, metadata)
    return model, metadata


def resolve_model(target: str | None, runs_root="runs") -> tuple[Path, Path | None]:
    """(model file, run folder or None) for a run folder / run name, a .keras file, or None (newest finished run)."""
    if target is not None:
        path = Path(target)
        kind = not_regular(path)
        if kind and kind != "a folder":   # zipfile would block on a FIFO until something writes to it
            raise CnntrainError(f"is {kind}, not a regular file; a model is read from a .keras file only",
                                file=str(path), hint="give the model.keras or best.keras of a run folder")
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
    """'0'..'N-1': the class names of a model file that names none."""
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
    """The (height, width, channels) the model takes: its own shape, which load_model checked the metadata against."""
    shape = tuple(model.input_shape[1:])   # the model's own; load_model checked the metadata against it
    if len(shape) != 3 or any(d is None for d in shape):
        raise CnntrainError(f"the model takes inputs shaped {shape}; expected a fixed (height, width, channels)")
    return tuple(int(d) for d in shape)


def check_input_shape(model, metadata, x_shape):
    """Refuse images whose shape is not the model's input shape."""
    want = input_shape_of(model, metadata)
    got = tuple(x_shape[1:]) if len(x_shape) == 4 else tuple(x_shape[1:]) + (1,)
    if got != want:
        raise CnntrainError(f"the images are {got} but the model takes {want}",
                            hint="evaluate on the data set (and image_size / color_mode) the model was trained with")

"""Model files: model.keras with our metadata inside, loaded safely (which file a RUN or MODEL
argument means is cnntrain/loading/resolve.py's).

The metadata (class names, input shape, preprocessing notes) is a JSON member, cnntrain.json,
inside Keras' own zip: plain `keras.models.load_model` still loads the file.
"""
from __future__ import annotations

import json
import zipfile

from cnntrain.errors import CnntrainError
from cnntrain.runs import atomic, schema

METADATA = "cnntrain.json"   # stored inside model.keras, beside Keras' own config.json
UNSAFE_HINT = "load it only if you trust it, with --unsafe"
# The largest image a model may ask for: predict and evaluate resize every image to it before the
# model sees it, so a 249-byte file declaring 20000x20000 would cost 4.8 GB per image. 4096 x 4096
# (ten times the pixels of the largest common classifier input, 600 x 600) is 200 MB of float RGB.
MAX_INPUT_PIXELS = 4096 * 4096


class CodeInModel(CnntrainError):
    """The model file holds code (a Lambda layer, a SavedModel's graph) and was not trusted to run it:
    each command says how it may be trusted (fit --init-from cannot be)."""


def check_input_size(path, shape):
    """Refuse a model whose (height, width, channels) input is larger than any image is resized to."""
    height, width = int(shape[0]), int(shape[1])
    if height * width > MAX_INPUT_PIXELS:
        raise CnntrainError(f"the model takes {height}x{width} images; cnntrain resizes images to at most "
                            f"{MAX_INPUT_PIXELS:,} pixels (4096x4096), so this model is refused before any "
                            "image is read", file=str(path),
                            hint="give an image classifier with a smaller input, such as a run's model.keras")


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
    real = [None if d is None else int(d) for d in model.input_shape[1:]]
    check_described(f"{path}:{METADATA}", metadata, real, int(model.output_shape[-1]))


def check_described(where, metadata: dict, real: list, outputs: int, hint: str = schema.DAMAGED_HINT):
    """Metadata (of a .keras or an exported model) against the model's real input shape and outputs."""
    if "input_shape" in metadata and metadata["input_shape"] != real:
        raise schema.damaged(where, "input_shape", f"is {metadata['input_shape']}, but the model takes {real}", hint)
    if metadata.get("image_size") is not None and metadata["image_size"] != real[:2]:
        # evaluate resizes the data set's images to it: it must be the model's own size
        raise schema.damaged(where, "image_size", f"is {metadata['image_size']}, but the model takes {real[:2]}",
                             hint)
    if "class_names" in metadata and len(metadata["class_names"]) != outputs:
        raise schema.damaged(where, "class_names", f"names {len(metadata['class_names'])} classes, but the model "
                             f"outputs {outputs}", hint)


def _refuse_unsafe(path):
    """What Keras' safe mode refuses, found in config.json before Keras reads it, so that it is said in
    the command line's terms (Keras raises a plain ValueError for each): Python code, which Keras
    serializes as a Lambda layer or a "__lambda__" object, and a vocabulary given as a file's path."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("config.json") as member:
            config = json.loads(member.read(MAX_JSON_BYTES["config.json"] + 1))
    except (KeyError, OSError, ValueError, RecursionError, zipfile.BadZipFile, EOFError):
        return   # no readable config: Keras' own error says what is wrong with the file
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") in ("Lambda", "__lambda__"):
                raise CodeInModel("cannot load the model: it contains Python code (a Lambda layer), which is not "
                                  "run unless you trust the file", file=str(path),
                                  hint=f"the file contains code (a Lambda layer); {UNSAFE_HINT}")
            if isinstance(node.get("vocabulary"), str):
                raise CodeInModel("cannot load the model: a layer in it reads a vocabulary file outside the model "
                                  "file, which is not read unless you trust it", file=str(path),
                                  hint=f"the file names a file elsewhere on this machine; {UNSAFE_HINT}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def load_model(path, *, unsafe: bool = False):
    """(model, metadata). Keras' safe mode stays on unless `unsafe`: a Lambda layer's code never runs."""
    metadata = read_metadata(path)   # first: it also bounds what Keras will inflate
    from cnntrain.backend import keras

    if not unsafe:
        _refuse_unsafe(path)
    try:
        model = keras.models.load_model(path, safe_mode=not unsafe, compile=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError ... for bad files
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnntrainError(f"cannot load the model: {text}", file=str(path)) from None
    check_metadata(path, model, metadata)
    shape = model.input_shape[1:] if isinstance(model.input_shape, tuple) else ()
    if len(shape) == 3 and shape[0] is not None and shape[1] is not None:
        check_input_size(path, shape)
    return model, metadata


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

"""Writing a Keras model as a SavedModel, a TFLite flatbuffer or an ONNX graph.

Every format takes what the .keras model takes: float32 images in the 0-255 range, shaped
(batch, height, width, channels), with the normalization inside. Before export the model is
rebuilt in float32 (a mixed-precision model cannot be written as ONNX) with every
Normalization layer folded into the equivalent per-channel Rescaling: tf2onnx turns a
Normalization's mean and variance into extra graph inputs, which onnxruntime then requires.
The rebuilt model is also given an explicit input signature, which a model fresh from
load_model (never called) needs for ONNX.

Conversion is Keras' own `model.export`; the TFLite quantizations are the TFLite converter's
options, passed through it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnntrain.errors import CnntrainError
from cnntrain.export.names import FILE_NAMES, FORMATS, INPUT_NAME, QUANTIZE
from cnntrain.loading.optional import need, quiet

ONNX_METADATA_KEY = "cnntrain"   # the ONNX model's metadata_props entry holding cnntrain.json


def check_choice(fmt: str, quantize: str) -> None:
    if fmt not in FORMATS:
        raise CnntrainError(f"unknown export format {fmt!r}", hint=f"--format is one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise CnntrainError(f"unknown quantization {quantize!r}", hint=f"--quantize is one of {', '.join(QUANTIZE)}")
    if quantize != "none" and fmt != "tflite":
        raise CnntrainError(f"--quantize {quantize} applies to --format tflite only",
                            hint=f"{fmt} is exported in float32; leave --quantize out, or export tflite")


# ---------------------------------------------------------------- the model to export


def folded_rescaling(layer):
    """Rescaling(scale=1/std, offset=-mean/std) per channel, equal to a Normalization layer on
    its last axis: Keras computes (x - mean) / max(sqrt(variance), epsilon)."""
    from cnntrain.backend import keras

    mean = np.asarray(layer.mean, dtype=np.float64).reshape(-1)
    std = np.maximum(np.sqrt(np.asarray(layer.variance, dtype=np.float64).reshape(-1)), keras.config.epsilon())
    return keras.layers.Rescaling(scale=(1.0 / std).astype(np.float32), offset=(-mean / std).astype(np.float32),
                                  name=layer.name, dtype="float32")


def _foldable(layer) -> bool:
    from cnntrain.backend import keras

    axis = getattr(layer, "axis", None)
    return (isinstance(layer, keras.layers.Normalization) and not layer.invert
            and tuple(axis if isinstance(axis, (list, tuple)) else [axis]) in ((-1,), (3,)))


def prepare(model):
    """A float32 copy of `model` with the same weights and Normalization folded into Rescaling."""
    from cnntrain.backend import keras

    def clone(layer):
        if _foldable(layer):
            return folded_rescaling(layer)
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
    except Exception as exc:  # subclassed models and exotic layers cannot be cloned
        raise CnntrainError(f"cannot prepare the model for export: {_first_line(exc)}",
                            hint="export works on the Sequential and functional models that cnntrain fit saves") from None
    for new, old in zip(copy.layers, model.layers):
        if not _foldable(old):
            new.set_weights(old.get_weights())
    return copy


def input_signature(shape):
    from cnntrain.backend import tf

    return [tf.TensorSpec((None, *shape), tf.float32, name=INPUT_NAME)]


# ---------------------------------------------------------------- writing


def write(model, fmt: str, quantize: str, folder: Path, shape, representative=None) -> Path:
    """Export the prepared `model` into `folder` (which exists and is empty); the exported file's path."""
    check_choice(fmt, quantize)
    folder = Path(folder)
    if fmt == "savedmodel":
        _keras_export(model, folder, "tf_saved_model", shape)
        return folder
    if fmt == "onnx":
        need("tf2onnx", what="ONNX export")
        need("onnx", what="ONNX export")
        path = folder / FILE_NAMES["onnx"]
        _keras_export(model, path, "onnx", shape)
        return path
    path = folder / FILE_NAMES["tflite"]
    _keras_export(model, path, "litert", shape, **converter_options(quantize, representative))
    return path


def converter_options(quantize: str, representative=None) -> dict:
    """The TFLite converter's attributes for a quantization (Keras passes them on)."""
    from cnntrain.backend import tf

    if quantize == "none":
        return {}
    options = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantize == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    elif quantize == "int8":
        if representative is None or len(representative) == 0:
            raise CnntrainError("int8 quantization needs representative images",
                                hint="they come from the training split of the model's data set")
        images = np.asarray(representative, dtype=np.float32)

        def samples():
            for i in range(len(images)):
                yield [images[i:i + 1]]

        # Integer kernels throughout; the input and output stay float32 (0-255 images in,
        # probabilities out), quantized and dequantized at the edges of the graph.
        options["representative_dataset"] = samples
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
    return options


def _keras_export(model, path: Path, keras_format: str, shape, **kwargs):
    try:
        with quiet():
            model.export(str(path), format=keras_format, verbose=False, input_signature=input_signature(shape),
                         **kwargs)
    except CnntrainError:
        raise
    except ImportError as exc:
        raise CnntrainError(f"{keras_format} export needs an optional package ({exc})",
                            hint="pip install 'cnntrain[export]'") from None
    except OSError as exc:
        from cnntrain.runs.atomic import write_error

        raise write_error(path, exc) from None
    except Exception as exc:  # converter errors come as many types
        raise CnntrainError(f"the {keras_format} export failed: {_first_line(exc)}",
                            hint="run again with --debug for the converter's own messages") from None


def embed_onnx_metadata(path: Path, metadata: dict) -> None:
    """cnntrain.json as the ONNX model's metadata_props["cnntrain"], so the file alone has its class names."""
    onnx = need("onnx", what="ONNX export")
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {ONNX_METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    onnx.save(model, str(path))


def size_of(path, skip=()) -> int:
    """Bytes of a file, or of every file under a folder (a SavedModel) but those named in `skip`."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.relative_to(path).as_posix() not in skip)


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__

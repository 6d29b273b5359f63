"""One small object for every kind of model file: .keras, .tflite, .onnx, a SavedModel folder.

    runner = load_runner("runs/mnist/.../export/tflite-int8")
    runner.predict(uint8_images)       # (N, classes) float32 probabilities
    runner.input_shape                 # (None, height, width, channels), as Keras says it
    runner.class_names

The metadata of an exported model (class names, input shape, normalization, data set) is the
cnntrain.json beside the file, or, for ONNX, the same text in the file's metadata_props.
A file without it still runs; its classes are then named 0..N-1.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnntrain.errors import CnntrainError
from cnntrain.export.names import METADATA
from cnntrain.export.optional import need, quiet
from cnntrain.runs import model_file

EXPORTED_SUFFIXES = (".tflite", ".onnx")
SAVED_MODEL = "saved_model.pb"
_IN_FOLDER = ("model.tflite", "model.onnx")   # what an export folder of ours holds


def exported_file(path) -> Path | None:
    """The exported model that `path` names (a .tflite / .onnx file, a SavedModel folder, or an
    export folder holding model.tflite / model.onnx), or None for anything else."""
    path = Path(path)
    if path.suffix.lower() in EXPORTED_SUFFIXES:
        return path
    if path.is_dir():
        if (path / SAVED_MODEL).is_file():
            return path
        for name in _IN_FOLDER:
            if (path / name).is_file():
                return path / name
    return None


def is_exported(path) -> bool:
    return exported_file(path) is not None


def resolve_and_load(target, runs_root="runs", *, unsafe=False):
    """(model, metadata, model file, run folder or None) for what predict and evaluate are given:
    an exported model (a runner that predicts like the Keras model), or else a run / .keras file
    as runs.model_file resolves and loads it."""
    exported = exported_file(target) if target is not None else None
    if exported is not None:
        runner = load_runner(exported)
        return runner, runner.metadata, exported, None
    path, run_dir = model_file.resolve_model(target, runs_root)
    model, metadata = model_file.load_model(path, unsafe=unsafe)
    return model, metadata, path, run_dir


def load_runner(path, *, unsafe: bool = False) -> "Runner":
    path = Path(path)
    exported = exported_file(path)
    if exported is None:
        return KerasRunner(path, unsafe=unsafe)
    if not exported.exists():
        raise CnntrainError("model file not found", file=str(exported))
    if exported.is_dir():
        return SavedModelRunner(exported)
    if exported.suffix.lower() == ".onnx":
        return OnnxRunner(exported)
    return TFLiteRunner(exported)


def read_sidecar(path: Path) -> dict:
    """The cnntrain.json beside an exported file (inside a SavedModel folder), or {}."""
    path = Path(path)
    sidecar = (path if path.is_dir() else path.parent) / METADATA
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CnntrainError(f"cannot read the model's metadata: {exc}", file=str(sidecar)) from None
    return data if isinstance(data, dict) else {}


class Runner:
    """The common part: shapes, class names, batching, the checks on what comes out."""

    kind = "?"
    exported = True   # evaluate_model feeds arrays to these rather than a tf.data pipeline

    def __init__(self, path: Path, metadata: dict, input_shape, num_classes: int):
        self.path = Path(path)
        self.metadata = metadata or {}
        shape = tuple(input_shape)
        if len(shape) != 4 or any(not isinstance(d, int) or d < 1 for d in shape[1:]) or shape[3] not in (1, 3):
            shown = tuple(d if isinstance(d, int) and d > 0 else None for d in shape[1:])
            raise CnntrainError(f"the model takes inputs shaped {shown}; cnntrain runs image classifiers that "
                                "take (height, width, 1 or 3 channels)", file=str(self.path),
                                hint="export the model with 'cnntrain export', or give a .keras model")
        if num_classes < 1:
            raise CnntrainError("the model's output is not one row of class probabilities per image",
                                file=str(self.path), hint="export the model with 'cnntrain export'")
        self.input_shape = (None, *shape[1:])
        self.output_shape = (None, int(num_classes))
        names = self.metadata.get("class_names") or [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise CnntrainError(f"the model outputs {num_classes} classes but its metadata names {len(names)}",
                                file=str(self.path), hint="export the model again with 'cnntrain export'")
        self.class_names = [str(c) for c in names]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.input_shape[1:])

    def predict(self, images, batch_size: int = 256) -> np.ndarray:
        """(N, classes) float32 probabilities for uint8 (or 0-255 float) images (N, H, W, C)."""
        x = np.asarray(images)
        if x.ndim == 3 and self.image_shape[2] == 1:
            x = x[..., np.newaxis]
        if x.shape[1:] != self.image_shape:
            raise CnntrainError(f"the images are {tuple(x.shape[1:])} but the model takes {self.image_shape}",
                                file=str(self.path))
        x = x.astype(np.float32, copy=False)
        if len(x) == 0:
            return np.zeros((0, self.output_shape[1]), np.float32)
        parts = [self._run(x[i:i + batch_size]) for i in range(0, len(x), int(batch_size))]
        out = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
        if out.shape != (len(x), self.output_shape[1]):
            raise CnntrainError(f"the model produced outputs shaped {out.shape}; expected "
                                f"({len(x)}, {self.output_shape[1]}) class probabilities", file=str(self.path))
        return out

    def predict_on_batch(self, x):   # Keras' name, which predict.predict_arrays calls
        return self.predict(x, batch_size=max(1, len(x)))

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _cannot_read(path, what, exc) -> CnntrainError:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    if f"{path} failed:" in text:   # onnxruntime: "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from PATH failed:WHY"
        text = text.split(f"{path} failed:", 1)[1].strip()
    return CnntrainError(f"not a readable {what} model file ({text})", file=str(path),
                         hint="give a model written by 'cnntrain export', or a run's model.keras")


class KerasRunner(Runner):
    kind = "keras"
    exported = False

    def __init__(self, path, *, unsafe=False, model=None, metadata=None):
        if model is None:
            model, metadata = model_file.load_model(path, unsafe=unsafe)
        self.model = model
        shape = model_file.input_shape_of(model, metadata or {})
        super().__init__(path, metadata or {}, (None, *shape), int(model.output_shape[-1]))

    def predict(self, images, batch_size: int = 256) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        if len(x) <= batch_size:
            return np.asarray(self.model.predict_on_batch(x), dtype=np.float32)
        return np.asarray(self.model.predict(x, batch_size=int(batch_size), verbose=0), dtype=np.float32)


class TFLiteRunner(Runner):
    """ai_edge_litert's Interpreter (tf.lite.Interpreter where ai_edge_litert is not installed)."""

    kind = "tflite"

    def __init__(self, path):
        interpreter_class = _interpreter_class()
        try:
            with quiet():
                self.interpreter = interpreter_class(model_path=str(path))
        except (ValueError, RuntimeError, OSError) as exc:
            raise _cannot_read(path, "TFLite", exc) from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise CnntrainError(f"the TFLite model has {len(inputs)} inputs and {len(outputs)} outputs; cnntrain "
                                "runs models with one image input and one output", file=str(path))
        self._in, self._out = inputs[0], outputs[0]
        signature = [int(d) for d in self._in.get("shape_signature", self._in["shape"])]
        self._dynamic = signature[0] == -1
        out_shape = [int(d) for d in self._out["shape"]]
        super().__init__(path, read_sidecar(path), [None, *signature[1:]],
                         out_shape[-1] if len(out_shape) == 2 else 0)
        self._batch = None

    def _run(self, x):
        if not self._dynamic:   # a file fixed at one image per call
            return np.concatenate([self._invoke(x[i:i + 1]) for i in range(len(x))])
        if self._batch != len(x):
            self.interpreter.resize_tensor_input(self._in["index"], [len(x), *self.image_shape])
            with quiet():
                self.interpreter.allocate_tensors()
            self._batch = len(x)
        return self._invoke(x)

    def _invoke(self, x):
        if self._batch is None:
            with quiet():
                self.interpreter.allocate_tensors()
            self._batch = 1
        self.interpreter.set_tensor(self._in["index"], _quantize(x, self._in))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self._out["index"]), self._out)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from cnntrain.backend import tf
        return tf.lite.Interpreter
    except (ImportError, AttributeError):
        raise CnntrainError("running a .tflite model needs the optional package ai-edge-litert",
                            hint="pip install 'cnntrain[export]'") from None


def _quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail.get("quantization", (0.0, 0))
    if scale:
        x = np.round(x / scale + zero)
    info = np.iinfo(dtype)
    return np.clip(x, info.min, info.max).astype(dtype)


def _dequantize(y, detail):
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind != "f" and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


class OnnxRunner(Runner):
    kind = "onnx"

    def __init__(self, path):
        ort = need("onnxruntime", what="running an .onnx model")
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise _cannot_read(path, "ONNX", exc) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise CnntrainError(f"the ONNX model takes {len(inputs)} inputs ({names}); cnntrain runs models that "
                                "take the image alone", file=str(path),
                                hint="export the .keras model with 'cnntrain export --format onnx', which folds the "
                                     "normalization into the graph")
        self._input = inputs[0]
        self._dtype = np.uint8 if self._input.type == "tensor(uint8)" else np.float32
        shape = [d if isinstance(d, int) else None for d in self._input.shape]
        out = [d if isinstance(d, int) else None for d in outputs[0].shape]
        metadata = read_sidecar(path)
        props = self.session.get_modelmeta().custom_metadata_map or {}
        if "cnntrain" in props:
            try:
                metadata = {**metadata, **json.loads(props["cnntrain"])}
            except ValueError:
                pass
        super().__init__(path, metadata, shape, out[-1] if len(out) == 2 and out[-1] else 0)
        self._fixed = shape[0] if isinstance(shape[0], int) else None

    def _run(self, x):
        if self._fixed == 1 and len(x) > 1:
            return np.concatenate([self._run(x[i:i + 1]) for i in range(len(x))])
        return self.session.run(None, {self._input.name: x.astype(self._dtype)})[0]


class SavedModelRunner(Runner):
    kind = "savedmodel"

    def __init__(self, path):
        from cnntrain.backend import tf

        try:
            with quiet():
                loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TensorFlow raises many types for a bad folder
            raise _cannot_read(path, "SavedModel", exc) from None
        self._loaded = loaded
        signature = getattr(loaded, "signatures", {}).get("serving_default")
        if signature is None:
            raise CnntrainError("the SavedModel has no serving_default signature", file=str(path))
        args, kwargs = signature.structured_input_signature
        outputs = signature.structured_outputs
        if args or len(kwargs) != 1 or len(outputs) != 1:
            raise CnntrainError(f"the SavedModel takes {len(args) + len(kwargs)} inputs and gives {len(outputs)} "
                                "outputs; cnntrain runs models with one image input and one output", file=str(path))
        (self._name, spec), = kwargs.items()
        (self._output, out_spec), = outputs.items()
        self._fn = signature
        self._tf = tf
        super().__init__(path, read_sidecar(path), list(spec.shape),
                         int(out_spec.shape[-1]) if out_spec.shape.rank == 2 and out_spec.shape[-1] else 0)

    def _run(self, x):
        return self._fn(**{self._name: self._tf.constant(x)})[self._output].numpy()

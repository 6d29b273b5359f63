"""One small object for every kind of model file: .keras, .tflite, .onnx, a SavedModel folder.

    runner = load(resolve("runs/mnist/.../export/tflite-int8"))
    runner.predict(uint8_images)       # (N, classes) float32 probabilities
    runner.input_shape                 # (None, height, width, channels), as Keras says it
    runner.class_names

A SavedModel is a TensorFlow program (its ops can read and write files, at load and when run): it
is loaded only with --unsafe, as a .keras file with a Lambda layer, and so is a .tflite that holds
TensorFlow (Flex) ops. An unknown .tflite is tried in a
child process first (probe.py). Every load and run failure of LiteRT and onnxruntime is our error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnntrain.errors import CnntrainError
from cnntrain.loading import probe, sidecar
from cnntrain.loading.optional import need, quiet
from cnntrain.loading.resolve import KERAS, ONNX, SAVED_MODEL, ModelRef, resolve
from cnntrain.runs import model_file
from cnntrain.runs.model_file import UNSAFE_HINT, CodeInModel

SAVED_MODEL_REFUSED = ("cannot load the model: a SavedModel is a TensorFlow program whose operations run when it is "
                       "loaded and called (they can read and write files), which is not done unless you trust it")


def load(ref: ModelRef, *, unsafe: bool = False, trusted: bool = False) -> "Runner":
    """The runner of any model file. `trusted`: a file this process has just written (export's own
    check), neither refused as a SavedModel nor probed."""
    if ref.kind == KERAS:
        return KerasRunner(ref.path, unsafe=unsafe)
    if ref.kind == SAVED_MODEL:
        if not (unsafe or trusted):
            raise CodeInModel(SAVED_MODEL_REFUSED, file=str(ref.path), hint=f"the folder is a program; {UNSAFE_HINT}")
        return SavedModelRunner(ref.path)
    if ref.kind == ONNX:
        return OnnxRunner(ref.path)
    if not (unsafe or trusted):
        ops = probe.flex_ops(ref.path)
        if ops:
            shown = ", ".join(ops[:5]) + (f" and {len(ops) - 5} more" if len(ops) > 5 else "")
            raise CodeInModel(f"cannot load the model: it holds TensorFlow operations ({shown}), which can read "
                              "and write files when they run and are not run unless you trust the file",
                              file=str(ref.path), hint=f"the file holds TensorFlow (Flex) operations; {UNSAFE_HINT}")
    return TFLiteRunner(ref.path, probed=trusted)


def resolve_and_load(target, runs_root="runs", *, unsafe=False):
    """(model, metadata, model file, run folder or None) for what predict and evaluate are given: a
    Keras model as Keras loads it, or a runner that predicts like one for any other kind."""
    ref = resolve(target, runs_root)
    if ref.kind == KERAS:
        model, metadata = model_file.load_model(ref.path, unsafe=unsafe)
        return model, metadata, ref.path, ref.run_dir
    runner = load(ref, unsafe=unsafe)
    return runner, runner.metadata, ref.path, None


def load_keras(target, runs_root="runs", *, command: str, unsafe: bool = False):
    """(Keras model, metadata, ModelRef) for a command that takes the model apart (its name, `command`,
    is in the error for any other kind of model)."""
    ref = resolve(target, runs_root, keras_for=command)
    model, metadata = model_file.load_model(ref.path, unsafe=unsafe)
    return model, metadata, ref


class Runner:
    """The common part: shapes, class names, batching, the checks on what comes out."""

    kind = "?"
    exported = True   # evaluate_model feeds arrays to these rather than a tf.data pipeline
    onnx_props = False   # whether the metadata came from the file's own metadata_props

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
        model_file.check_input_size(self.path, shape[1:])
        if self.exported:   # a .keras file's metadata was checked as it was loaded
            sidecar.check_against(self.path, self.metadata, shape[1:], int(num_classes), self.onnx_props)
        self.input_shape = (None, *shape[1:])
        self.output_shape = (None, int(num_classes))
        self.class_names = [str(c) for c in self.metadata.get("class_names") or range(num_classes)]
        self._softmax = False

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
        try:
            parts = [self._run(x[i:i + batch_size]) for i in range(0, len(x), int(batch_size))]
        except CnntrainError:
            raise
        except Exception as exc:  # LiteRT, onnxruntime and TensorFlow each raise their own types
            raise _failed(self.path, f"cannot run the {self.kind} model", exc) from None
        out = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
        if out.shape != (len(x), self.output_shape[1]):
            raise CnntrainError(f"the model produced outputs shaped {out.shape}; expected "
                                f"({len(x)}, {self.output_shape[1]}) class probabilities", file=str(self.path))
        return _softmax(out) if self._softmax else out

    def scores_note(self) -> str | None:
        """None when the model outputs a distribution over its classes; else a softmax is applied to
        what it outputs from now on, and the note says so (as for a .keras model ending in scores).
        An exported file has no layers to look at: its outputs for two images are."""
        probe_images = np.stack([np.zeros(self.image_shape, np.float32), np.full(self.image_shape, 255, np.float32)])
        out = self.predict(probe_images)
        classes = self.output_shape[1]
        sums = out.sum(axis=1)
        # an int8 output is rounded to 1/256 per class: its rows sum to 1 within half a step per class
        if np.all(np.isfinite(out)) and out.min() >= -1e-6 and np.all(np.abs(sums - 1) <= 0.01 + classes / 512):
            return None
        self._softmax = True
        return (f"the model's outputs are not probabilities over the {classes} classes (a row sums to "
                f"{_figure(sums[np.argmax(np.abs(sums - 1))])}): they are taken as scores (logits) and a softmax "
                "over the classes applied")

    def predict_on_batch(self, x):   # Keras' name, which predict.predict_arrays calls
        return self.predict(x, batch_size=max(1, len(x)))

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def _figure(value) -> str:
    return f"{value:.6g}"


def _failed(path, what, exc) -> CnntrainError:
    return CnntrainError(f"{what} ({probe.reason(path, exc)})", file=str(path), hint=probe.HINT)


def _cannot_read(path, what, exc) -> CnntrainError:
    return _failed(path, f"not a readable {what} model file", exc)


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

    def __init__(self, path, *, probed: bool = False):
        interpreter_class = probe.interpreter_class()
        if not probed:   # LiteRT can crash the process on a malformed file: a child finds out first
            probe.tflite(path)
        try:
            with quiet():
                self.interpreter = interpreter_class(model_path=str(path))
            inputs = self.interpreter.get_input_details()
            outputs = self.interpreter.get_output_details()
        except Exception as exc:  # LiteRT raises ValueError, RuntimeError and others
            raise _cannot_read(path, "TFLite", exc) from None
        if len(inputs) != 1 or len(outputs) != 1:
            raise CnntrainError(f"the TFLite model has {len(inputs)} inputs and {len(outputs)} outputs; cnntrain "
                                "runs models with one image input and one output", file=str(path))
        self._in, self._out = inputs[0], outputs[0]
        self._logits = self._quantized_logits()
        if self._logits is not None:   # read again keeping the logits, which the arena would reuse
            try:
                with quiet():
                    self.interpreter = interpreter_class(model_path=str(path), experimental_preserve_all_tensors=True)
            except Exception as exc:  # as above
                raise _cannot_read(path, "TFLite", exc) from None
        signature = [int(d) for d in self._in.get("shape_signature", self._in["shape"])]
        self._dynamic = signature[0] == -1
        out_shape = [int(d) for d in self._out["shape"]]
        super().__init__(path, sidecar.read_sidecar(path), [None, *signature[1:]],
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
        if self._logits is not None:
            return _softmax(_dequantize(self.interpreter.get_tensor(self._logits["index"]), self._logits))
        return _dequantize(self.interpreter.get_tensor(self._out["index"]), self._out)

    def _quantized_logits(self) -> dict | None:
        """The int8 logits of a softmax computed in int8 at the graph's end, or None.

        An int8 softmax holds probabilities in steps of 1/256: a confident class reads 0.9961 and
        the next ones 0, tied in an arbitrary order. Its input, dequantized, gives the real figures
        (within the quantization of the logits) and the order of every class."""
        try:
            ops = [op for op in self.interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
            tensors = {t["index"]: t for t in self.interpreter.get_tensor_details()}
        except (AttributeError, ValueError, RuntimeError):   # a runtime without the op list
            return None
        made_by = {int(t): op for op in ops for t in op["outputs"]}
        op = made_by.get(int(self._out["index"]))
        if op is not None and op["op_name"] == "DEQUANTIZE":
            op = made_by.get(int(op["inputs"][0]))
        if op is None or op["op_name"] != "SOFTMAX" or len(op["inputs"]) != 1:
            return None
        logits = tensors.get(int(op["inputs"][0]))
        quantized = logits is not None and np.dtype(logits["dtype"]).kind in "iu" and logits["quantization"][0] > 0
        return logits if quantized else None


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
        props = self.session.get_modelmeta().custom_metadata_map or {}
        self.onnx_props = sidecar.ONNX_KEY in props
        metadata = sidecar.onnx_metadata(path, props)
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
        super().__init__(path, sidecar.read_sidecar(path), list(spec.shape),
                         int(out_spec.shape[-1]) if out_spec.shape.rank == 2 and out_spec.shape[-1] else 0)

    def _run(self, x):
        return self._fn(**{self._name: self._tf.constant(x)})[self._output].numpy()

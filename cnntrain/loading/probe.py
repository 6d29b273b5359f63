"""An unknown .tflite tried in a child process before this one loads it.

LiteRT trusts the flatbuffer: files that pass its verifier still crashed it (a segmentation fault in
allocate_tensors, exit 139) where no Python exception can be caught. The child loads the file,
allocates and invokes it once on a zero image; a crash, a hang or an error there is our error here.

    python -m cnntrain.loading.probe FILE.tflite     exit 0, or 1 with the reason on stdout
"""
from __future__ import annotations

import signal
import subprocess
import sys

from cnntrain.errors import CnntrainError

TIMEOUT_S = 120   # loading and one invoke of a classifier takes about a second, even a large one
HINT = "give a model written by 'cnntrain export', or a run's model.keras"


def tflite(path):
    """Return when the child loaded and ran `path`; else a CnntrainError saying what happened to it."""
    try:
        done = subprocess.run([sys.executable, "-m", "cnntrain.loading.probe", str(path)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CnntrainError(f"not a readable TFLite model file (loading it and running it once took over "
                            f"{TIMEOUT_S} s)", file=str(path), hint=HINT) from None
    except OSError as exc:
        raise CnntrainError(f"cannot start a process to try the TFLite model: {exc.strerror}", file=str(path)) from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        name = _signal_name(-done.returncode)
        raise CnntrainError(f"not a readable TFLite model file (the TFLite runtime crashed on it: {name})",
                            file=str(path), hint=HINT)
    text = done.stdout.strip().splitlines()[-1][:300] if done.stdout.strip() else f"exit status {done.returncode}"
    raise CnntrainError(f"not a readable TFLite model file ({text})", file=str(path), hint=HINT)


def interpreter_class():
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


def reason(path, exc) -> str:
    """The first line of a runtime's message (its type when it has none), without the path it repeats."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    if f"{path} failed:" in text:   # onnxruntime: "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from PATH failed:WHY"
        text = text.split(f"{path} failed:", 1)[1].strip() or type(exc).__name__
    return text


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _child(path) -> int:
    """Load, check the input size, allocate, invoke once; the reason of a failure on stdout."""
    import numpy as np

    from cnntrain.loading.optional import quiet
    from cnntrain.runs.model_file import check_input_size

    try:
        with quiet():
            interpreter = interpreter_class()(model_path=str(path))
        inputs = interpreter.get_input_details()
        if len(inputs) == 1:
            shape = [max(1, int(d)) for d in inputs[0]["shape"]]
            if len(shape) == 4:
                check_input_size(path, shape[1:])   # before LiteRT allocates what the file asks for
                if shape[0] != 1:
                    interpreter.resize_tensor_input(inputs[0]["index"], [1, *shape[1:]])
        with quiet():
            interpreter.allocate_tensors()
        for detail in inputs:
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        with quiet():
            interpreter.invoke()
    except CnntrainError as exc:
        print(exc.message)
        return 1
    except Exception as exc:  # noqa: BLE001 - whatever LiteRT raises is the reason the parent gives
        print(reason(path, exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))

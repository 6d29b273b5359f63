"""An unknown .tflite tried in a child process before this one loads it.

LiteRT trusts the flatbuffer: files that pass its verifier still crashed it (a segmentation fault in
allocate_tensors, exit 139) where no Python exception can be caught. The child loads the file,
allocates and invokes it once on a zero image; a crash, a hang or an error there is our error here.

    python -m cnntrain.loading.probe FILE.tflite     exit 0, or 1 with the reason on stdout

`flex_ops` reads, without any interpreter, the TensorFlow operations a file names: TensorFlow's
pip package runs them (tf.lite.Interpreter links its Flex delegate), and they can read and write
files, so such a file is refused unless trusted, before the child runs it.
"""
from __future__ import annotations

import mmap
import signal
import struct
import subprocess
import sys

from cnntrain.errors import CnntrainError, printable

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


FLEX_PREFIX = "Flex"   # the converter names a TensorFlow op kept in a .tflite file custom code "Flex<Op>"


def flex_ops(path) -> list[str]:
    """The TensorFlow ops (WriteFile, ...) the .tflite file `path` names, sorted; [] for none. Read
    from the flatbuffer's Model.operator_codes (field 1) and each OperatorCode.custom_code (field 1),
    as the schema lays them out, with `flatbuffers` alone: nothing of the file is run."""
    from flatbuffers import encode, number_types, table

    names = set()
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            model = table.Table(data, encode.Get(number_types.UOffsetTFlags.packer_type, data, 0))
            codes = model.Offset(6)
            start, count = (model.Vector(codes), model.VectorLen(codes)) if codes else (0, 0)
            if count * 4 > len(data):
                raise ValueError("operator_codes is longer than the file")
            for i in range(count):
                code = table.Table(data, model.Indirect(start + 4 * i))
                custom = code.Offset(6)
                name = code.String(custom + code.Pos).decode("utf-8", "replace") if custom else ""
                if name.startswith(FLEX_PREFIX):
                    names.add(printable(name[len(FLEX_PREFIX):][:60]))   # it is printed
    except (OSError, IndexError, TypeError, ValueError, struct.error):   # flatbuffers raises all but OSError
        # An empty file, an offset outside it: LiteRT's and TensorFlow's flatbuffer verifier refuse
        # such a file before any op of it runs, and the child gives their reason.
        return []
    return sorted(names)


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
    except Exception as exc:  # whatever LiteRT raises is the reason the parent gives
        print(reason(path, exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))

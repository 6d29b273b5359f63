"""The optional runtimes (tf2onnx, onnx, onnxruntime, ai_edge_litert), imported when needed,
and a way to keep their C++ start-up chatter off the terminal."""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings

from cnntrain.errors import CnntrainError

EXTRA_HINT = "pip install 'cnntrain[export]'"


def need(module: str, package: str | None = None, *, what: str = "this"):
    """`import module`, or a CnntrainError naming the package and the extra that brings it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # tf2onnx's numpy FutureWarnings, ai_edge_litert's notices
            return importlib.import_module(module)
    except ImportError:
        raise CnntrainError(f"{what} needs the optional package {package or module}", hint=EXTRA_HINT) from None


@contextlib.contextmanager
def quiet():
    """File descriptors 1 and 2 to /dev/null: the TFLite converter, the XNNPACK delegate and tf2onnx
    print from C++ and from Python's print(). CNNTRAIN_DEBUG=1 keeps them."""
    if os.environ.get("CNNTRAIN_DEBUG"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)

"""TensorFlow and Keras, imported quietly.

Import from here (`from cnntrain.backend import tf, keras`) rather than importing
TensorFlow directly: the CLI imports the modules that do this lazily, so `--help`
and `check` of the spec alone never pay for TensorFlow, and the C++ logging that
TensorFlow prints on import (absl's "All log messages before absl::InitializeLog()",
cuda stubs) never reaches the user's terminal. `CNNTRAIN_DEBUG=1` keeps it.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# oneDNN's "custom operations are on" notice; the numerics note it prints is about
# float rounding order, which we accept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1"))


def _import_quietly():
    if os.environ.get("CNNTRAIN_DEBUG"):
        import tensorflow as tf_
        import keras as keras_
        return tf_, keras_
    # absl writes to file descriptor 2 before Python's logging exists, so only
    # redirecting the descriptor itself silences it.
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf_
        import keras as keras_
        tf_.get_logger().setLevel("ERROR")
        # The first device query triggers more C++ logging (CUDA probing).
        tf_.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf_, keras_


tf, keras = _import_quietly()
if os.environ.get("CNNTRAIN_FULL_TRACEBACKS"):
    keras.config.disable_traceback_filtering()

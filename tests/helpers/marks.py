"""Skip markers for what a machine may lack: a GPU, root with mount. Tests pass with and without them."""
from __future__ import annotations

import functools
import os
import shutil

import pytest


@functools.lru_cache(maxsize=1)
def gpu_count() -> int:
    """GPUs TensorFlow sees (imports TensorFlow: call it from a test, not at collection)."""
    from cnntrain.backend import tf

    return len(tf.config.list_physical_devices("GPU"))


def needs_gpu():
    if not gpu_count():
        pytest.skip("needs a GPU that TensorFlow sees")


def needs_no_gpu():
    if gpu_count():
        pytest.skip("checks the message of a machine without a GPU")


needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"),
                                reason="needs root and mount (a real tmpfs)")

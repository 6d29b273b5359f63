"""Skip markers for what a machine may lack: a GPU, root with mount. Tests pass with and without them."""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess

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


@contextlib.contextmanager
def tmpfs(folder, options: str, why: str = "mounting a tmpfs"):
    """A real tmpfs mounted on the empty `folder` (`options`: mount's -o), unmounted after; the
    test is skipped, with `why` and mount's reason, on a machine that is not root or refuses mount."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip(f"{why} needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"{why}: cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)

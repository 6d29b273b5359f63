"""Shared fixtures: tiny real datasets in real formats, and a tiny spec that trains in seconds."""
import os
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits(n, seed=0, size=28):
    """n learnable 'digits': class k is a bright bar at row band k on a dark background."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    rng.shuffle(y)
    x = rng.integers(0, 40, size=(n, size, size), dtype=np.uint8)
    band = size // 10
    for i, label in enumerate(y):
        x[i, label * band:(label + 1) * band + 1, 4:size - 4] = 230
    return x, y.astype(np.uint8)


@pytest.fixture
def mnist_dir(tmp_path):
    """A folder holding mnist.npz in Keras' layout: 200 train, 50 test images."""
    folder = tmp_path / "data"
    folder.mkdir()
    x_train, y_train = digits(200, seed=1)
    x_test, y_test = digits(50, seed=2)
    np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return folder


TINY_SPEC = """\
name: tiny
seed: 7
data:
  dataset: mnist
  validation_split: 0.2
preprocess:
  normalize: scale
model:
  input_shape: [28, 28, 1]
  layers:
    - Conv2D: {{filters: 4, kernel_size: 3, strides: 2}}
    - Activation: relu
    - MaxPooling2D: {{pool_size: 2}}
    - Flatten
    - Dense: {{units: 10, activation: softmax}}
compile:
  optimizer: {{Adam: {{learning_rate: 0.01}}}}
fit:
  batch_size: 32
  epochs: {epochs}
output:
  dir: {runs}
"""


@pytest.fixture
def tiny_spec(tmp_path, mnist_dir):
    """Write the tiny spec (epochs=2 by default) and return its path; its data is `mnist_dir`."""

    def write(epochs=2, extra="", name="tiny.yaml"):
        path = tmp_path / name
        path.write_text(TINY_SPEC.format(epochs=epochs, runs=tmp_path / "runs") + textwrap.dedent(extra))
        return path

    return write

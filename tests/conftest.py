"""Shared fixtures: every test isolated from the user's caches and from the network, tiny real
datasets in real formats, and a tiny spec that trains in seconds. Helpers are in tests/helpers/."""
import os
import textwrap

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers.formats import tiny_mnist  # noqa: E402
from helpers.runs import TINY_SPEC  # noqa: E402


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Never the user's Keras cache or data folder, and never a download."""
    from cnntrain.data import lookup

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("CNNTRAIN_DATA_DIR", raising=False)

    def no_network(**kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(lookup, "_get_file", no_network)


@pytest.fixture
def mnist_dir(tmp_path):
    """A folder holding mnist.npz in Keras' layout: 200 train, 50 test images."""
    folder = tmp_path / "data"
    folder.mkdir()
    tiny_mnist(folder)
    return folder


@pytest.fixture
def tiny_spec(tmp_path, mnist_dir):
    """Write the tiny spec (epochs=2 by default) and return its path; its data is `mnist_dir`."""

    def write(epochs=2, extra="", name="tiny.yaml"):
        path = tmp_path / name
        path.write_text(TINY_SPEC.format(epochs=epochs, runs=tmp_path / "runs") + textwrap.dedent(extra))
        return path

    return write

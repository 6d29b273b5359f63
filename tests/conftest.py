"""Shared fixtures: every test isolated from the user's caches and from the network, tiny real
datasets in real formats, and a tiny spec that trains in seconds. Helpers are in tests/helpers/."""
import os
import textwrap

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Processes the tests start (python -m cnntrain) import this checkout, whatever is installed, and
# wherever the test runs: each test runs in its own folder (below).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join([_REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

from helpers.formats import tiny_mnist  # noqa: E402 - after PYTHONPATH is set for the processes tests start
from helpers.runs import TINY_SPEC  # noqa: E402


def pytest_addoption(parser, pluginmanager):
    """pyproject's addopts name pytest-xdist's options; without xdist (-p no:xdist, or not installed)
    they are accepted and ignored, and the suite runs in this process."""
    if not pluginmanager.has_plugin("xdist"):
        # Own dest names: other plugins (pytest-benchmark) read `dist` to tell that xdist is running.
        parser.addoption("--numprocesses", dest="no_xdist_numprocesses", help="ignored: pytest-xdist is not loaded")
        parser.addoption("--dist", dest="no_xdist_dist", help="ignored: pytest-xdist is not loaded")


@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory):
    """The same for what runs before a test's own `isolated`: a module's fixtures (test_export's
    image folders were decoded into the user's ~/.cache/cnntrain)."""
    from cnntrain.data import lookup

    patch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("session")
    patch.setenv("KERAS_HOME", str(home / "keras"))
    patch.setenv("CNNTRAIN_CACHE_DIR", str(home / "cnntrain-cache"))
    patch.delenv("CNNTRAIN_DATA_DIR", raising=False)

    def no_network(**kwargs):
        raise AssertionError("a fixture tried to download")

    patch.setattr(lookup, "_get_file", no_network)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Never the user's Keras cache or data folder, never a download, and the current folder is the
    test's own (a spec's relative paths, such as output.dir: runs, land there)."""
    from cnntrain.data import lookup

    monkeypatch.chdir(tmp_path)

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("CNNTRAIN_CACHE_DIR", str(tmp_path / "cnntrain-cache"))   # decoded images: the test's own
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
    """Write the tiny spec (epochs=2 by default) and return its path; its data is `mnist_dir`, its runs
    go to runs/ in the test's folder (tmp_path, the current folder)."""

    def write(epochs=2, extra="", name="tiny.yaml"):
        path = tmp_path / name
        path.write_text(TINY_SPEC.format(epochs=epochs, runs="runs") + textwrap.dedent(extra))
        return path

    return write

"""A tiny spec that trains in seconds, what its finished run folder holds, and its history.csv."""
import csv

RUN_FILES = {".cnntrain-run", ".lock", "spec.yaml", "env.json", "model.keras", "best.keras", "history.csv", "metrics.json",
             "curves.png"}

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


def make_runs(root):
    """Under `root`: data/mnist.npz, tiny.yaml (2 epochs) and two real run folders of it, `unfinished`
    (both epochs committed in backup/, stopped just before the final files) and `finished` (evaluated).
    For tests that damage run folders: copy one, break the copy."""
    import shutil
    from pathlib import Path

    import numpy as np
    import pytest

    from cnntrain.errors import CnntrainError
    from cnntrain.train import fit
    from helpers.cli import run_cli
    from helpers.formats import digits

    root = Path(root)
    (root / "data").mkdir()
    x_train, y_train = digits(200, seed=1)
    x_test, y_test = digits(50, seed=2)
    np.savez(root / "data" / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC.format(epochs=2, runs="runs"))   # --out names the folders; output.dir stays relative

    def stop(*args, **kwargs):
        raise CnntrainError("stopped before the final files")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fit, "finish", stop)
        result = run_cli("fit", spec, "--data-dir", root / "data", "--out", root / "unfinished", "--quiet")
    assert result.exit_code == 1 and result.stderr == "error: stopped before the final files\n", result.output
    shutil.copytree(root / "unfinished", root / "finished")
    result = run_cli("fit", "--resume", root / "finished", "--data-dir", root / "data", "--quiet")
    assert result.exit_code == 0, result.output
    result = run_cli("evaluate", root / "finished", "--data-dir", root / "data")
    assert result.exit_code == 0 and (root / "finished" / "eval.json").is_file(), result.output
    return root


def trained_runs(root, epochs: int, fits: list[list], run) -> dict:
    """Under `root`: data/mnist.npz, tiny.yaml (runs under root/runs, an absolute output.dir, so each
    fit is given --trust-spec) and one finished fit per entry of `fits` (its extra arguments), through
    `run` (a CLI runner). Returns root, data, runs, the fits' results, a seven drawn as seven.png and
    the test images."""
    from PIL import Image

    from helpers.formats import tiny_mnist

    data = root / "data"
    data.mkdir()
    x_test, y_test = tiny_mnist(data)
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC.format(epochs=epochs, runs=root / "runs"))
    results = [run("fit", spec, "--data-dir", data, "--quiet", "--trust-spec", *extra) for extra in fits]
    for result in results:
        assert result.exit_code == 0, result.output
    image = root / "seven.png"
    Image.fromarray(x_test[list(y_test).index(7)]).save(image)
    return {"root": root, "data": data, "runs": root / "runs", "image": image, "x_test": x_test, "y_test": y_test,
            "fits": results}


COSINE = "compile.optimizer={Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.01, decay_steps: %s}}}}"


def history(run):
    """history.csv of a run folder, one dict of strings per epoch."""
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))

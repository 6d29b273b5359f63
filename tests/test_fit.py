"""`cnntrain fit` end to end on tiny real data: run folders, NaN, determinism, output modes, devices, locks."""
import json
import math
import os
import sys

import pytest
from click.testing import CliRunner

from cnntrain.runs import folder, model_file
from cnntrain.cli import cli
from helpers.cli import run_cli
from helpers.marks import gpu_count, needs_gpu, needs_no_gpu
from helpers.runs import COSINE, RUN_FILES, history
from cnntrain.spec import load_spec


def test_fit_writes_a_complete_run_folder(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=2)
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert [row["epoch"] for row in history(run)] == ["1", "2"]
    assert load_spec(run / "spec.yaml").values == load_spec(spec).values
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["stopped"] == "completed"
    assert set(metrics["test"]) == {"loss", "accuracy"}
    assert metrics["parameters"] == (1 * 9 + 1) * 4 + (6 * 6 * 4 + 1) * 10
    env = json.loads((run / "env.json").read_text())
    assert env["seed"] == 7 and env["device"] == ("gpu" if gpu_count() else "cpu")
    model, meta = model_file.load_model(run / "model.keras")
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["background"] == "dark" and meta["normalize"] == "scale"
    assert model.layers[0].name == "scale"


def test_fit_json_prints_only_json(tiny_spec, mnist_dir, tmp_path):
    result = CliRunner().invoke(cli, ["fit", str(tiny_spec(epochs=1)), "--data-dir", str(mnist_dir),
                                                      "--json", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["epochs"] == 1 and data["run"] == str(tmp_path / "run")
    assert result.stderr == ""


def test_out_folder_holding_a_run_is_refused(tiny_spec, mnist_dir, tmp_path):
    run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", tmp_path / "run")
    result = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert result.stderr == (f"{tmp_path / 'run'}: this folder already holds a run\n  hint: resume it with "
                             f"'cnntrain fit --resume {tmp_path / 'run'}', or choose a new --out\n")


def test_nan_loss_keeps_the_last_good_epoch(tiny_spec, mnist_dir, tmp_path):
    # 160 training images / batch 32 = 5 steps per epoch; from step 6 the learning rate is 5e36,
    # and the weights overflow as they would with a far too high learning rate.
    spec = tiny_spec(epochs=3)
    spec.write_text(spec.read_text().replace(
        "optimizer: {Adam: {learning_rate: 0.01}}",
        "optimizer: {SGD: {learning_rate: {ExponentialDecay: {initial_learning_rate: 0.05, decay_steps: 5, "
        "decay_rate: 1.0e+38, staircase: true}}}}"))
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "warning: the loss became NaN at epoch 2, step " in result.output
    assert "model.keras holds the last good weights, from epoch 1" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped"] == "nan" and metrics["epochs"] == 1
    assert [row["epoch"] for row in history(tmp_path / "run")] == ["1"]


def test_nan_loss_in_the_first_epoch_saves_nothing(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=3)
    spec.write_text(spec.read_text().replace("learning_rate: 0.01", "learning_rate: .nan"))
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run")
    assert result.exit_code == 1
    # Step 1's loss is computed with the initial weights; the NaN update shows from step 2.
    assert result.stderr.endswith("error: the loss became NaN at epoch 1, step 2, before any epoch finished; nothing "
                             "was saved\n  hint: lower the learning rate, or normalize the input "
                             "(preprocess.normalize: scale)\n")
    assert "epoch 1/3" in result.stderr
    assert not (tmp_path / "run").exists()


def test_deterministic_runs_repeat_exactly(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=2, extra="augment:\n  - RandomTranslation: {height_factor: 0.1, width_factor: 0.1}\n")
    for name in ("a", "b"):
        result = run_cli("fit", spec, "--data-dir", mnist_dir, "--deterministic", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    drop = ("seconds",)
    a = [{k: v for k, v in row.items() if k not in drop} for row in history(tmp_path / "a")]
    b = [{k: v for k, v in row.items() if k not in drop} for row in history(tmp_path / "b")]
    assert a == b


def test_a_learning_rate_written_2e_3_trains(tiny_spec, mnist_dir, tmp_path):
    # YAML 1.1 read 2e-3 as a string: check passed, then fit died with "internal error: TypeError", rc 70.
    spec = tiny_spec(epochs=1)
    spec.write_text(spec.read_text().replace(
        "learning_rate: 0.01", "learning_rate: {CosineDecay: {initial_learning_rate: 2e-3, decay_steps: 10}}"))
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    model, _ = model_file.load_model(tmp_path / "run" / "model.keras")
    assert model.optimizer.learning_rate.numpy() == pytest.approx(0.002 * (1 + math.cos(math.pi * 5 / 10)) / 2)
    assert "initial_learning_rate: 0.002," in (tmp_path / "run" / "spec.yaml").read_text()


def test_tensorboard_flag_logs_into_the_run(tiny_spec, mnist_dir, tmp_path):
    result = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--tensorboard", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == RUN_FILES | {"tensorboard"}
    for part in ("train", "validation"):
        assert [p.name.split(".")[:3] for p in (run / "tensorboard" / part).iterdir()] == [["events", "out", "tfevents"]]
    assert "tensorboard: true" in (run / "spec.yaml").read_text()


def test_tensorboard_that_cannot_be_imported_is_a_spec_error(tiny_spec, mnist_dir, tmp_path, monkeypatch):
    # Was: TBNotInstalledError mid-fit, "internal error", exit 70 and an empty run folder. A finder
    # that refuses the package stands for a machine without it (in this process: a fresh one
    # would spend its seconds importing TensorFlow).
    class NoTensorboard:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorboard":
                raise ModuleNotFoundError("No module named 'tensorboard'")

    for name in [n for n in sys.modules if n.split(".")[0] == "tensorboard"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NoTensorboard(), *sys.meta_path])
    spec = tiny_spec(epochs=1)
    spec.write_text(spec.read_text().replace("  epochs: 1\n", "  epochs: 1\n  tensorboard: true\n"))
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert result.stderr == (f"{spec}:21:16: fit.tensorboard needs the tensorboard package, which cannot be "
                             "imported (No module named 'tensorboard')\n  hint: it is one of cnntrain's "
                             "dependencies: pip install tensorboard (or reinstall cnntrain), or set "
                             "fit.tensorboard: false\n")
    assert not (tmp_path / "run").exists()


def test_gpu_on_a_machine_without_one(tiny_spec, mnist_dir):
    needs_no_gpu()
    result = run_cli("fit", tiny_spec(), "--data-dir", mnist_dir, "--device", "gpu")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --device gpu: TensorFlow sees no GPU on this machine\n")


def test_fit_on_the_gpu(tiny_spec, mnist_dir, tmp_path):
    needs_gpu()
    result = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--device", "gpu", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "env.json").read_text())["device"] == "gpu"
    cpu = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--device", "cpu", "--out", tmp_path / "cpu")
    assert cpu.exit_code == 0, cpu.output
    assert json.loads((tmp_path / "cpu" / "env.json").read_text())["device"] == "cpu"


@pytest.mark.parametrize("setting, flags, policy", [
    (["--set", "fit.precision=mixed"], set(), "mixed_bfloat16"),
    (["--mixed-precision"], set(), "mixed_bfloat16"),                         # over the spec's float32
    (["--set", "fit.precision=auto"], {"avx512f", "amx_bf16", "avx512_bf16"}, "mixed_bfloat16"),
    (["--set", "fit.precision=auto"], {"avx512f", "avx512_bf16"}, "mixed_bfloat16"),   # Zen 4: 1.30x
    (["--set", "fit.precision=auto"], {"avx512f", "avx2", "fma"}, "float32"),
    ([], {"amx_bf16"}, "float32"),
], ids=["mixed", "flag", "auto-amx", "auto-bf16-only", "auto-no-bf16", "default"])
def test_precision_on_a_cpu(setting, flags, policy, tiny_spec, mnist_dir, tmp_path, monkeypatch):
    from cnntrain.backend import keras
    from cnntrain.train import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    try:
        result = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--device", "cpu", *setting,
                         "--out", tmp_path / "run")
        assert result.exit_code == 0, result.output
        assert f"precision {policy}\n" in result.stderr
        assert json.loads((tmp_path / "run" / "env.json").read_text())["precision"] == policy
        model, _ = model_file.load_model(tmp_path / "run" / "model.keras")
        assert model.layers[1].compute_dtype == policy.removeprefix("mixed_")
    finally:
        keras.config.set_dtype_policy("float32")


def test_cpu_flags_are_read_from_proc_cpuinfo():
    from cnntrain.train import devices

    if not os.path.exists("/proc/cpuinfo"):
        assert devices.cpu_flags() == set()
        return
    with open("/proc/cpuinfo") as f:
        line = next(line for line in f if line.startswith("flags"))
    assert devices.cpu_flags() == set(line.split(":", 1)[1].split()) and "fpu" in devices.cpu_flags()


def test_locked_run_folder_is_refused(tiny_spec, mnist_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", run)
    (run / folder.BACKUP).mkdir()
    (run / folder.BACKUP / "state.json").write_text(json.dumps({"epochs_done": 0, "best": None, "best_epoch": None,
                                                              "history": [], "weights": None,
                                                              "monitor": "val_accuracy", "callbacks": []}))
    with folder.RunLock(run):
        result = run_cli("fit", "--resume", run, "--data-dir", mnist_dir)
    assert result.exit_code == 1
    assert result.stderr == (f"{run}: another cnntrain fit is writing to this run folder\n"
                             "  hint: wait for it to finish, or train into another folder with --out\n")


def test_limit_draws_from_every_class_of_sorted_data(tmp_path):
    """Image folders come sorted by class: a limit must not take the first N (one class)."""
    import numpy as np

    from cnntrain.data.splits import _subset

    x = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    y = np.repeat(np.arange(10), 10)
    keep = _subset(len(x), 30, seed=3)
    xs, ys = x[keep], y[keep]
    assert len(xs) == 30 and len(set(ys.tolist())) >= 8
    assert list(xs.ravel()) == sorted(xs.ravel())          # original order kept
    assert np.array_equal(_subset(len(x), 30, seed=3), keep)  # seeded
    assert np.array_equal(_subset(len(x), 500, seed=3), np.arange(100))




def test_a_schedule_over_the_whole_run_follows_epochs(tiny_spec, mnist_dir, tmp_path):
    # 160 training images in batches of 32: 5 steps an epoch; 'all' is 2 epochs here, so the cosine
    # reaches 0 at the last step, while '8 epochs' would still be near its start.
    for value, run in (("all", "whole"), ("'8 epochs'", "fixed")):
        result = run_cli("fit", tiny_spec(epochs=8), "--epochs", 2, "--set", COSINE % value, "--data-dir", mnist_dir,
                         "--out", tmp_path / run, "--quiet")
        assert result.exit_code == 0, result.output
    assert [float(r["learning_rate"]) for r in history(tmp_path / "whole")] == pytest.approx([0.005, 0.0], abs=1e-6)
    assert float(history(tmp_path / "fixed")[-1]["learning_rate"]) == pytest.approx(0.00853553, rel=1e-4)  # 0.005 x (1 + cos(pi x 10 / 40))

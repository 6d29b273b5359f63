"""Resuming `cnntrain fit`: a killed fit goes on from its last epoch, a finished run trains longer,
a new run starts from another's weights; on tiny real data."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cnntrain.runs import folder, model_file
from cnntrain.spec import load_spec
from helpers.cli import run_cli
from helpers.procs import killed_after, reaped
from helpers.runs import COSINE, history


def test_resume_reads_the_data_where_the_fit_found_it(tiny_spec, mnist_dir, tmp_path):
    # The resume command fit prints has no --data-dir; it used to fail offline without one.
    run = tmp_path / "run"
    assert run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", run).exit_code == 0
    assert json.loads((run / "env.json").read_text())["data_source"] == str(mnist_dir / "mnist.npz")
    (run / folder.BACKUP).mkdir()
    (run / folder.BACKUP / "state.json").write_text(json.dumps({"epochs_done": 0, "best": None, "best_epoch": None,
                                                              "history": [], "weights": None,
                                                              "monitor": "val_accuracy", "callbacks": []}))
    result = run_cli("fit", "--resume", run, "--offline")
    assert result.exit_code == 0, result.output
    assert f"data: {mnist_dir / 'mnist.npz'}: 160 train, 40 validation, 50 test images" in result.stderr
    _, meta = model_file.load_model(run / "model.keras")
    assert meta["data_source"] == str(mnist_dir / "mnist.npz")


def test_a_resumed_fit_goes_on_with_its_callbacks_counters(tiny_spec, mnist_dir, tmp_path):
    """EarlyStopping's counters in the resume state are put back after Keras resets them as training
    begins: 5 epochs waited against a best loss of 0 and a patience of 3 stop the resumed fit after its
    second epoch (Keras never stops after the first), where a fresh count would train all 4."""
    run = tmp_path / "run"
    callbacks = "fit.callbacks=[{EarlyStopping: {monitor: loss, patience: 3}}]"
    assert run_cli("fit", tiny_spec(epochs=4), "--set", callbacks, "--data-dir", mnist_dir, "--out", run,
                   "--quiet").exit_code == 0
    (run / folder.BACKUP).mkdir()
    (run / folder.BACKUP / "state.json").write_text(json.dumps({"epochs_done": 0, "best": None, "best_epoch": None,
                                                              "history": [], "weights": None,
                                                              "monitor": "val_accuracy",
                                                              "callbacks": [{"wait": 5, "best": 0.0}]}))
    result = run_cli("fit", "--resume", run, "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["stopped"]) == (2, "early_stopping")
    assert [int(r["epoch"]) for r in history(run)] == [1, 2]


def test_resume_refuses_a_changed_spec(tiny_spec, mnist_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", run)
    (run / folder.BACKUP).mkdir()
    result = run_cli("fit", tiny_spec(epochs=1), "--resume", run, "--set", "fit.batch_size=16")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{run}: the spec differs from the one this run was started with:\n")
    assert "-  batch_size: 32\n+  batch_size: 16\n" in result.output
    finished = run_cli("fit", "--resume", tmp_path / "nothing")
    assert finished.exit_code == 1


def test_killed_fit_resumes_to_the_exact_epoch_count(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=12)
    run = tmp_path / "run"
    env = {**os.environ, "CNNTRAIN_DATA_DIR": str(mnist_dir)}
    before = killed_after(["fit", spec, "--out", run, "--quiet"], run, 2, env=env)
    assert 2 <= before["epochs_done"] < 12
    assert not (run / "model.keras").exists()
    result = run_cli("fit", "--resume", run, "--data-dir", mnist_dir)
    assert result.exit_code == 0, result.output
    assert f"resuming {run} after epoch {before['epochs_done']} of 12" in result.output
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 12
    assert metrics["best"]["value"] >= before["best"]
    assert not (run / folder.BACKUP).exists()


@pytest.mark.slow   # a kill soak: six epochs twice (test_killed_fit_resumes_to_the_exact_epoch_count stays in CI)
def test_killed_and_resumed_run_is_the_uninterrupted_run(tiny_spec, mnist_dir, tmp_path):
    """Was: the resumed process replayed epoch 1's shuffle order, augmentation and dropout masks, so
    epoch 2 differed (0.7611 against 0.7111 on 3,000 MNIST images)."""
    spec = tiny_spec(epochs=6, extra="augment:\n  - RandomTranslation: {height_factor: 0.1, width_factor: 0.1}\n")
    spec.write_text(spec.read_text().replace("    - Flatten\n", "    - Flatten\n    - Dropout: 0.3\n"))
    whole = run_cli("fit", spec, "--data-dir", mnist_dir, "--deterministic", "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "cnntrain", "fit", str(spec), "--data-dir", str(mnist_dir),
                             "--deterministic", "--out", str(run), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with reaped(proc):
        state = run / folder.BACKUP / "state.json"
        deadline = time.time() + 120
        while not (state.exists() and json.loads(state.read_text() or "{}").get("epochs_done", 0) >= 1):
            assert time.time() < deadline and proc.poll() is None, "the fit never finished an epoch"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    done = json.loads(state.read_text())["epochs_done"]
    assert 1 <= done < 6
    resumed = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--deterministic")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} after epoch {done} of 6" in resumed.output
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in history(run)] == \
        [{k: v for k, v in r.items() if k not in drop} for r in history(tmp_path / "whole")]
    figures = [json.loads((r / "metrics.json").read_text())["test"] for r in (run, tmp_path / "whole")]
    assert figures[0] == figures[1]


def test_a_finished_run_trains_longer_and_its_schedule_goes_on(tiny_spec, mnist_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    spec = tiny_spec(epochs=2)
    assert run_cli("fit", spec, "--set", COSINE % "all", "--data-dir", mnist_dir, "--out", run, "-q").exit_code == 0
    monkeypatch.chdir(tmp_path)
    newest = run_cli("fit", "--resume", "--epochs", 4)  # the newest unfinished run: there is none
    assert newest.stderr == ("error: no unfinished run found under runs/\n  hint: train one first with 'cnntrain fit "
                             "SPEC', or give the run folder; a finished run is trained longer with 'cnntrain fit "
                             "--resume RUN --epochs N'\n")
    first = history(run)
    assert run_cli("evaluate", run, "--data-dir", mnist_dir).exit_code == 0
    again = run_cli("fit", "--resume", run, "--data-dir", mnist_dir)
    assert again.exit_code == 1
    assert again.stderr == (f"{run}: this run is finished after 2 epochs; there is nothing to resume\n"
                            f"  hint: to train it longer, give the number of epochs in all, e.g. "
                            f"'cnntrain fit --resume {run} --epochs 4'\n")
    shorter = run_cli("fit", "--resume", run, "--epochs", 2, "--data-dir", mnist_dir)
    assert shorter.stderr.startswith(f"{run}: this run is finished after 2 epochs; --epochs 2 would not train it "
                                     "longer\n")
    workers = run_cli("fit", "--resume", run, "--epochs", 4, "--strategy", "multi-worker", "-q")
    assert workers.stderr == (f"{run}: a finished run cannot be trained longer with multi-worker training\n"
                              "  hint: train it longer on one machine, or start a new run from it with --init-from\n")
    # No --data-dir: the run's own (env.json) is used, so the command in the hint works as printed.
    result = run_cli("fit", "--resume", run, "--epochs", 4)
    assert result.exit_code == 0, result.output
    assert f"data: {mnist_dir / 'mnist.npz'}: 160 train" in result.stderr
    assert f"training {run} longer: epochs 3 to 4\n" in result.stderr
    rows = history(run)
    assert rows[:2] == first and [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    # The optimizer's step went on from 10 (not from 0) and 'all' is now 20 steps: after epoch 3 the
    # cosine is at step 15 of 20, 0.005 x (1 + cos(0.75 pi)); restarted, it would be at 0.005 again.
    assert [float(r["learning_rate"]) for r in rows[2:]] == pytest.approx([0.00146447, 0.0], abs=1e-7)
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 4
    assert load_spec(run / "spec.yaml")["fit"]["epochs"] == 4
    assert not (run / folder.BACKUP).exists()
    assert model_file.read_metadata(run / "model.keras")["epoch"] == 4
    # eval.json is of the epoch-2 model: runs shows the fit's test figure of the model as it is now.
    listed = json.loads(run_cli("runs", "--runs", tmp_path, "--json").stdout)
    assert [(row["run"], row["epochs"], row["test_from"]) for row in listed] == [(str(run), 4, "fit")]


def test_a_new_run_starts_from_another_runs_weights(tiny_spec, mnist_dir, tmp_path):
    import numpy as np

    from helpers.formats import digits

    x_train, y_train = digits(200, seed=3)
    x_test, y_test = digits(50, seed=4)
    np.savez(mnist_dir / "fashion_mnist.npz", x_train=255 - x_train, y_train=y_train, x_test=255 - x_test,
             y_test=y_test)
    spec, source = tiny_spec(epochs=2), tmp_path / "mnist"
    assert run_cli("fit", spec, "--data-dir", mnist_dir, "--out", source, "-q").exit_code == 0
    # A learning rate of 0 keeps the starting weights: they must be the MNIST run's, exactly.
    result = run_cli("fit", spec, "--init-from", source, "--set", "data.dataset=fashion_mnist", "--epochs", 1,
                     "--set", "compile.optimizer={SGD: {learning_rate: 0.0}}", "--data-dir", mnist_dir,
                     "--out", tmp_path / "fashion")
    assert result.exit_code == 0, result.output
    assert f"initial weights: {source / 'model.keras'}\n" in result.stderr
    assert json.loads((tmp_path / "fashion" / "env.json").read_text())["init_from"] == str(source / "model.keras")
    before, _ = model_file.load_model(source / "model.keras")
    after, meta = model_file.load_model(tmp_path / "fashion" / "model.keras")
    assert meta["dataset"] == "fashion_mnist"
    assert all(np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights()))
    wider = run_cli("fit", spec, "--init-from", source / "model.keras", "--set", "model.layers.0.Conv2D.filters=8",
                    "--data-dir", mnist_dir, "--out", tmp_path / "wider", "-q")
    assert wider.exit_code == 1 and not (tmp_path / "wider").exists()
    assert wider.stderr == (f"{source / 'model.keras'}: cannot start from this model: its layer 1 with weights "
                            "(Conv2D) has weights shaped (3, 3, 1, 4), (4,), the spec's Conv2D needs (3, 3, 1, 8), "
                            "(8,)\n  hint: --init-from needs a model with the same layers: a run of a spec with the "
                            "same model: section\n")
    both = run_cli("fit", "--resume", source, "--init-from", source)
    assert both.exit_code == 2 and "give --resume or --init-from, not both" in both.stderr


@pytest.mark.slow   # a kill soak: twelve epochs with a kill
def test_a_run_killed_while_trained_longer_resumes(tiny_spec, mnist_dir, tmp_path):
    run = tmp_path / "run"
    assert run_cli("fit", tiny_spec(epochs=2), "--data-dir", mnist_dir, "--out", run, "-q").exit_code == 0
    first = history(run)
    killed = killed_after(["fit", "--resume", run, "--epochs", 12, "-q"], run, 3)
    assert 3 <= killed["epochs_done"] < 12
    assert load_spec(run / "spec.yaml")["fit"]["epochs"] == 12
    result = run_cli("fit", "--resume", run)
    assert result.exit_code == 0, result.output
    rows = history(run)
    assert rows[:2] == first and [int(r["epoch"]) for r in rows] == list(range(1, 13))
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 12
    assert not (run / folder.BACKUP).exists()


def test_resume_looks_for_runs_where_the_spec_puts_them_or_under_runs(tiny_spec, tmp_path):
    """fit --resume looked under runs/ whatever the spec's output.dir; --runs is every command's option."""
    spec = tiny_spec(epochs=1)
    spec.write_text(spec.read_text().replace("  dir: runs", "  dir: mine"))
    hint = ("  hint: train one first with 'cnntrain fit SPEC', or give the run folder; a finished run is trained "
            "longer with 'cnntrain fit --resume RUN --epochs N'\n")
    for args, root in (((spec, "--resume"), "mine"), ((spec, "--resume", "--runs", "other"), "other"),
                       (("--resume",), "runs")):
        result = run_cli("fit", *args)
        assert (result.exit_code, result.stderr) == (1, f"error: no unfinished run found under {root}/\n{hint}"), args


def test_a_run_trained_longer_counts_the_time_of_every_process(tiny_spec, mnist_dir, tmp_path):
    run = tmp_path / "run"
    assert run_cli("fit", tiny_spec(epochs=2), "--data-dir", mnist_dir, "--out", run, "-q").exit_code == 0
    first = json.loads((run / "metrics.json").read_text())
    assert first["train_epochs_timed"] == 1     # the first (tracing) epoch is left out of images/s
    assert run_cli("fit", "--resume", run, "--epochs", 4, "-q").exit_code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    later = sum(float(r["seconds"]) for r in history(run)[2:])
    # The first process's whole time, then this one's epochs (and its set-up and test) on top.
    assert metrics["wall_time_s"] > first["wall_time_s"] + later
    # Epochs 2 and 4 timed: each process's first epoch traces the model.
    assert metrics["train_epochs_timed"] == 2 and metrics["train_seconds"] > first["train_seconds"]
    assert metrics["train_images_per_s"] == round(160 * 2 / metrics["train_seconds"], 1)
    listed = json.loads(run_cli("runs", "--runs", tmp_path, "--json").stdout)
    assert [(row["wall_time_s"], row["images_per_s"]) for row in listed] == \
        [(metrics["wall_time_s"], metrics["train_images_per_s"])]

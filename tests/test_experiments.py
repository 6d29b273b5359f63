"""Experiments on tiny real trainings: runs compared, model cards, the LR range test, sweeps."""
import hashlib
import json
import textwrap

import numpy as np
import pytest

from helpers.cli import run_cli
from helpers.formats import digits, picture_size
from helpers.runs import TINY_SPEC


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished tiny runs of one spec, the second with another learning rate and 3 epochs;
    the first evaluated. Trained once for the module: the tests below only read them."""
    root = tmp_path_factory.mktemp("two_runs")
    data = root / "data"
    data.mkdir()
    (x, y), (xt, yt) = digits(200, seed=1), digits(50, seed=2)
    np.savez(data / "mnist.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC.format(epochs=2, runs="runs"))   # --out names the folders
    for name, extra in (("a", []), ("b", ["--set", "compile.optimizer.Adam.learning_rate=0.003",
                                          "--set", "fit.epochs=3"])):
        result = run_cli("fit", spec, "--data-dir", data, "--offline", "--out", root / name, "--quiet", *extra)
        assert result.exit_code == 0, result.output
    assert run_cli("evaluate", root / "a", "--data-dir", data, "--offline").exit_code == 0
    return root


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_compare_shows_spec_differences_figures_and_writes_one_overlay(two_runs, tmp_path):
    a, b = two_runs / "a", two_runs / "b"
    result = run_cli("runs", "--compare", a, b, "--out", tmp_path / "cmp.png")
    assert result.exit_code == 0, result.output
    ma, mb = _metrics(a), _metrics(b)
    ev = json.loads((a / "eval.json").read_text())

    def line(name, x, y):
        return f"  {name:<24}{x:>14}{y:>14}"

    def pct(v):
        return f"{100 * v:.2f}%"

    # The row name is longer than the label column: the column widens to it plus two spaces.
    label = len("compile.optimizer.Adam.learning_rate") + 2
    expected = ["spec differences:", "  " + "".ljust(label) + f"{'a':>14}{'b':>14}",
                "  " + "compile.optimizer.Adam.learning_rate".ljust(label) + f"{'0.01':>14}{'0.003':>14}",
                "  " + "fit.epochs".ljust(label) + f"{'2':>14}{'3':>14}",
                "", "figures:", f"  {'':<24}{'a':>14}{'b':>14}".rstrip(),
                line("status", "completed", "completed"), line("epochs", "2", "3"),
                line("best val_accuracy", f"{pct(ma['best']['value'])} @{ma['best']['epoch']}",
                     f"{pct(mb['best']['value'])} @{mb['best']['epoch']}"),
                line("validation accuracy", pct(ma["validation"]["accuracy"]), pct(mb["validation"]["accuracy"])),
                line("validation loss", f"{ma['validation']['loss']:.4f}", f"{mb['validation']['loss']:.4f}"),
                line("test accuracy", pct(ma["test"]["accuracy"]), pct(mb["test"]["accuracy"])),
                line("test loss", f"{ma['test']['loss']:.4f}", f"{mb['test']['loss']:.4f}"),
                line("evaluated accuracy", pct(ev["accuracy"]), "-"),
                line("macro F1", f"{ev['macro_f1']:.4f}", "-"),
                line("parameters", "1,490", "1,490"),
                line("wall time", f"{ma['wall_time_s']:.1f} s", f"{mb['wall_time_s']:.1f} s"),
                line("images/s", f"{ma['train_images_per_s']:,.0f}", f"{mb['train_images_per_s']:,.0f}")]
    assert result.stdout == "\n".join(expected) + "\n"
    assert result.stderr == f"wrote {tmp_path / 'cmp.png'}\n"
    assert picture_size(tmp_path / "cmp.png") == (1100, 400)


def test_compare_json_and_its_mistakes(two_runs, tmp_path):
    a, b = two_runs / "a", two_runs / "b"
    result = run_cli("runs", "--compare", a, b, "--json", "--out", tmp_path / "cmp.png")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["differences"] == {"compile.optimizer.Adam.learning_rate": [0.01, 0.003], "fit.epochs": [2, 3]}
    assert [f["epochs"] for f in data["figures"]] == [2, 3]
    assert data["labels"] == ["a", "b"] and data["overlay"] == str(tmp_path / "cmp.png")

    result = run_cli("runs", "--compare", a)
    assert (result.exit_code, result.stderr) == (1, "error: --compare needs at least two runs, received 1\n  hint: "
                                                    "e.g. cnntrain runs --compare runs/mnist/20261125-103000 "
                                                    "runs/mnist/20261126-090000\n")
    result = run_cli("runs", a, b)
    assert result.exit_code == 2
    assert "to compare runs, add --compare: cnntrain runs --compare RUN RUN..." in result.stderr
    result = run_cli("runs", "--compare", a, tmp_path / "nothing")
    assert (result.exit_code, result.stderr) == (1, f"{tmp_path / 'nothing'}: no run folder '{tmp_path / 'nothing'}'"
                                                    "\n  hint: give a folder holding spec.yaml, such as one listed by "
                                                    "'cnntrain runs' (under runs/)\n")


def test_card_reads_like_a_hugging_face_model_card(two_runs, tmp_path):
    run = two_runs / "a"
    result = run_cli("card", run, "--data-dir", two_runs / "data", "--out", tmp_path / "CARD.md")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {tmp_path / 'CARD.md'}\n"
    card = (tmp_path / "CARD.md").read_text()
    ev = json.loads((run / "eval.json").read_text())
    metrics, env = _metrics(run), json.loads((run / "env.json").read_text())
    digest = hashlib.sha256((two_runs / "data" / "mnist.npz").read_bytes()).hexdigest()
    pct = f"{100 * ev['accuracy']:.2f}%"
    per_class = "\n".join(f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | "
                          f"{r['support']} |" for r in ev["per_class"])
    confused = "\n".join(f"| {p['true']} | {p['predicted']} | {p['count']} |" for p in ev["most_confused"])
    assert card == textwrap.dedent(f"""\
        ---
        library_name: keras
        pipeline_tag: image-classification
        tags:
        - cnntrain
        - keras
        - image-classification
        datasets:
        - mnist
        metrics:
        - accuracy
        model-index:
        - name: tiny
          results:
          - task:
              type: image-classification
              name: Image Classification
            dataset:
              type: mnist
              name: mnist
              split: test
            metrics:
            - type: accuracy
              value: {round(ev['accuracy'], 4)}
        ---

        # tiny

        A convolutional image classifier for the 10 classes of `mnist`, trained with cnntrain from this folder's `spec.yaml`; test accuracy **{pct}**.

        ## Model

        | # | layer (keras.layers) |
        | --- | --- |
        | 1 | `Conv2D: {{filters: 4, kernel_size: 3, strides: 2}}` |
        | 2 | `Activation: relu` |
        | 3 | `MaxPooling2D: {{pool_size: 2}}` |
        | 4 | `Flatten` |
        | 5 | `Dense: {{units: 10, activation: softmax}}` |

        Input 28 x 28 x 1; preprocessing `scale` is the model's first layer, so `model.keras` takes raw 0-255 pixels. 1,490 parameters.

        ## Training data

        | | |
        | --- | --- |
        | dataset | `mnist` |
        | source | `{two_runs / 'data' / 'mnist.npz'}` |
        | sha256 of `mnist.npz` | `{digest}` (**differs from the published checksum**) |
        | images | 28 x 28 x 1 |
        | train | 160 |
        | validation | 40 (0.2 of the training images, stratified by class, seed 7) |
        | test | 50 |
        | classes | 10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 |

        ## Training procedure

        | | |
        | --- | --- |
        | optimizer | `Adam: {{learning_rate: 0.01}}` |
        | loss | `sparse_categorical_crossentropy`, label smoothing 0 |
        | batch size | 32 |
        | epochs | 2 of 2 (completed) |
        | augmentation | none |
        | callbacks | none |
        | seed | 7 |
        | best val_accuracy | {100 * metrics['best']['value']:.2f}% at epoch {metrics['best']['epoch']} |
        | wall time | {metrics['wall_time_s']:,.1f} s, {metrics['train_images_per_s']:,.0f} training images/s |
        | environment | cnntrain 0.1.0, Python {env['python']}, TensorFlow {env['tensorflow']}, Keras {env['keras']}, NumPy {env['numpy']}; {env['device']} (float32); {env['platform']} |

        ## Evaluation

        On the test split (50 images): loss {ev['loss']:.4f}, accuracy **{pct}**, top-5 accuracy {100 * ev['top_k_accuracy']:.2f}%, macro F1 {ev['macro_f1']:.4f}.

        | class | precision | recall | F1 | support |
        | --- | ---: | ---: | ---: | ---: |
        @PER_CLASS@
        """).replace("@PER_CLASS@", per_class) + (f"\nMost confused:\n\n| true | predicted as | count |\n| --- | --- | ---: |\n{confused}\n"
                if confused else "") + textwrap.dedent(f"""
        ## Pictures

        ![Training curves](curves.png)
        ![Confusion matrix](confusion.png)

        ## How to use

        ```
        cnntrain predict --run {run} image.png
        ```

        or in Python (the model normalizes its input itself):

        ```python
        import keras
        model = keras.models.load_model("{run / 'model.keras'}")
        ```

        ## Reproduce

        ```
        cnntrain fit {run / 'spec.yaml'}
        ```

        ## Limitations

        Trained and tested only on `mnist`: images unlike it (other sizes, backgrounds, subjects) are classified into its classes all the same, with no warning. The figures are from one seed; another seed gives somewhat different ones.
        """)


def test_card_without_the_data_or_an_evaluation_says_what_is_missing(two_runs, tmp_path):
    run = two_runs / "b"
    result = run_cli("card", run, "--out", tmp_path / "CARD.md")
    assert result.exit_code == 0, result.output
    card = (tmp_path / "CARD.md").read_text()
    metrics = _metrics(run)
    assert ("## Training data\n\n| | |\n| --- | --- |\n| dataset | `mnist` |\n\nChecksums and split sizes were "
            "not computed: no mnist data found (give `--data-dir`).\n") in card
    assert (f"## Evaluation\n\nTest loss {metrics['test']['loss']:.4f}, accuracy "
            f"{100 * metrics['test']['accuracy']:.2f}% (from the fit). Per-class figures come with "
            f"`cnntrain evaluate {run}`.\n\n## Pictures\n\n![Training curves](curves.png)\n\n") in card
    assert not (run / "MODEL_CARD.md").exists()


def test_an_evaluation_of_an_earlier_epoch_is_never_shown_as_the_runs(two_runs, tmp_path):
    import shutil

    run = tmp_path / "a"
    shutil.copytree(two_runs / "a", run)   # evaluated at epoch 2
    old = json.loads((run / "eval.json").read_text())
    resumed = run_cli("fit", "--resume", run, "--epochs", 3, "--data-dir", two_runs / "data", "--offline", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    metrics = _metrics(run)
    assert (old["epoch"], metrics["epochs"]) == (2, 3)

    compared = run_cli("runs", "--compare", run, two_runs / "b", "--out", tmp_path / "cmp.png")
    assert compared.exit_code == 0, compared.output
    evaluated = next(line for line in compared.stdout.splitlines() if line.startswith("  evaluated accuracy"))
    assert evaluated.split() == ["evaluated", "accuracy", f"{100 * old['accuracy']:.2f}%", "(epoch", "2)", "-"]
    f1 = next(line for line in compared.stdout.splitlines() if line.startswith("  macro F1"))
    assert f1.split() == ["macro", "F1", f"{old['macro_f1']:.4f}", "(epoch", "2)", "-"]

    carded = run_cli("card", run, "--out", tmp_path / "CARD.md")
    assert carded.exit_code == 0, carded.output
    card = (tmp_path / "CARD.md").read_text()
    test = f"{100 * metrics['test']['accuracy']:.2f}%"
    assert f"; test accuracy **{test}**." in card and f"value: {round(metrics['test']['accuracy'], 4)}\n" in card
    assert (f"## Evaluation\n\nTest loss {metrics['test']['loss']:.4f}, accuracy {test} (from the fit). eval.json "
            f"measured the model of epoch 2; the run has trained to epoch 3 since. Per-class figures come with "
            f"`cnntrain evaluate {run}`.\n") in card
    assert "![Confusion matrix of epoch 2's model](confusion.png)" in card
    assert f"{100 * old['accuracy']:.2f}%" not in card.replace(test, "")


def test_lr_find_suggests_a_rate_inside_its_range_as_a_set_line(tiny_spec, mnist_dir, tmp_path):
    from cnntrain.spec import load_spec

    spec = tiny_spec(epochs=1)
    result = run_cli("lr-find", spec, "--data-dir", mnist_dir, "--offline", "--steps", "60", "--start", "1e-5",
                     "--end", "1", "--out", tmp_path / "lr.png", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["steps_run"] == 60 and len(found["rates"]) == len(found["losses"]) == 60
    assert found["rates"][0] == pytest.approx(1e-5) and found["rates"][-1] == pytest.approx(1.0)
    assert 1e-5 <= found["steepest"] <= 1.0 and found["minimum"] >= found["steepest"]
    key, _, value = found["set"].removeprefix("--set ").partition("=")
    assert key == "compile.optimizer.Adam.learning_rate"
    applied = load_spec(spec, [found["set"].removeprefix("--set ")])
    assert applied["compile"]["optimizer"] == {"Adam": {"learning_rate": float(value)}}
    assert float(value) == pytest.approx(found["steepest"], rel=0.05)
    assert picture_size(tmp_path / "lr.png") == (650, 420)

    result = run_cli("lr-find", spec, "--data-dir", mnist_dir, "--steps", "60", "--start", "1e-5", "--end", "1",
                     "--out", tmp_path / "lr2.png")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("lr-find: 60 of 60 steps from 1e-05 to 1 (")
    assert lines[1].startswith("lowest loss ") and lines[2].startswith("suggested: --set "
                                                                       "compile.optimizer.Adam.learning_rate=")
    assert 1e-5 <= float(lines[2].rpartition("=")[2]) <= 1.0
    assert result.stderr == f"wrote {tmp_path / 'lr2.png'}\n"


def test_lr_find_stops_when_the_loss_explodes(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=1)
    spec.write_text(spec.read_text().replace("optimizer: {Adam: {learning_rate: 0.01}}", "optimizer: sgd"))
    result = run_cli("lr-find", spec, "--data-dir", mnist_dir, "--steps", "100", "--start", "1e-3", "--end", "1e6",
                     "--out", tmp_path / "lr.png", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["stopped_at"] is not None and found["steps_run"] == found["stopped_at"] < 100
    assert 1e-3 <= found["steepest"] <= 1e6
    value = found["set"].split("learning_rate: ")[1].rstrip("}'")
    assert found["set"] == f"--set 'compile.optimizer={{SGD: {{learning_rate: {value}}}}}'"


def test_lr_find_refuses_a_falling_range(tiny_spec, mnist_dir):
    result = run_cli("lr-find", tiny_spec(), "--data-dir", mnist_dir, "--start", "1", "--end", "0.1")
    assert (result.exit_code, result.stderr) == (1, "error: the range must rise: received --start 1 and --end 0.1\n"
                                                    "  hint: e.g. --start 1e-7 --end 10\n")


# ---------------------------------------------------------------- sweeps

def epochs_done(run) -> int:
    """The epochs an unfinished run has committed (backup/state.json), 0 before the first."""
    try:
        return json.loads((run / "backup" / "state.json").read_text())["epochs_done"]
    except (OSError, ValueError, KeyError):
        return 0


def _study(sweep):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="cnntrain", storage=f"sqlite:///{sweep / 'study.db'}")


def _search(tmp_path, text, name="search.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.slow
def test_a_killed_or_interrupted_sweep_resumes_and_never_reruns_a_finished_trial(tiny_spec, mnist_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from helpers.procs import reaped

    spec = tiny_spec(epochs=3)
    search = _search(tmp_path, """\
        sampler: random
        pruner: none
        seed: 3
        params:
          compile.optimizer.Adam.learning_rate: {low: 1.0e-3, high: 3.0e-2, log: true}
          fit.batch_size: {choices: [16, 32]}
        """)
    sweep = tmp_path / "sweep"
    args = ["sweep", str(spec), "--search", str(search), "--trials", "3", "--data-dir", str(mnist_dir), "--offline",
            "--out", str(sweep), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def stopped(sig, trial: str, log: Path) -> int:
        """Run the sweep in its own process; send `sig` once `trial` has committed an epoch."""
        with open(log, "wb") as out, reaped(subprocess.Popen(
                [sys.executable, "-m", "cnntrain", *args], env=env, stdout=out, stderr=out,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))) as proc:
            deadline = time.monotonic() + 150
            while epochs_done(sweep / trial) < 1:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"{trial} did not start in time"
                time.sleep(0.02)
            proc.send_signal(sig)
            return proc.wait(timeout=60)

    # Killed after the first trial, in the middle of the second: once it has committed an epoch.
    assert stopped(signal.SIGKILL, "trial-001", tmp_path / "log1") == -signal.SIGKILL
    first = {name: (sweep / "trial-000" / name).read_bytes() for name in ("metrics.json", "history.csv", "spec.yaml")}
    stamp = (sweep / "trial-000" / "metrics.json").stat().st_mtime_ns
    committed = epochs_done(sweep / "trial-001")
    second_epoch_1 = (sweep / "trial-001" / "history.csv").read_text().splitlines()[:2]
    assert [t.state.name for t in _study(sweep).trials] == ["COMPLETE", "RUNNING"]

    # The same command: trial 1 goes on; Ctrl-C in the middle of trial 2.
    assert stopped(signal.SIGINT, "trial-002", tmp_path / "log2") == 130
    lines = (tmp_path / "log2").read_text().splitlines()
    assert lines[0].startswith("trial 1 complete ") and lines[1:] == [
        f"error: interrupted; trial 2 keeps its finished epochs in {sweep / 'trial-002'}",
        "  hint: run the same cnntrain sweep command to go on"]

    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    trials = _study(sweep).trials
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    # The third command ran trial 2 only; trial 0's folder is untouched.
    assert [line.split()[:2] for line in result.stderr.splitlines()] == [["trial", "2"]]
    assert {name: (sweep / "trial-000" / name).read_bytes() for name in first} == first
    assert (sweep / "trial-000" / "metrics.json").stat().st_mtime_ns == stamp
    # Trial 1 went on in its own folder from its last committed epoch: epoch 1 was not trained again.
    history = (sweep / "trial-001" / "history.csv").read_text().splitlines()
    assert 1 <= committed <= 3 and history[:2] == second_epoch_1
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]
    assert sorted(p.name for p in sweep.iterdir()) == [".cnntrain-sweep", ".lock", "base.yaml", "best.yaml",
                                                       "leaderboard.json", "search.yaml", "study.db", "tensorboard",
                                                       "trial-000", "trial-001", "trial-002"]
    from cnntrain.runs import folder
    from cnntrain.spec import load_spec

    board = json.loads((sweep / "leaderboard.json").read_text())
    values = [t.value for t in trials]
    assert [r["number"] for r in board["trials"]] == sorted(range(3), key=lambda n: (-values[n], n))
    best = board["trials"][0]
    assert (sweep / "best.yaml").read_text() == (sweep / best["run"] / "spec.yaml").read_text()
    for t in trials:
        run = sweep / f"trial-{t.number:03d}"
        assert folder.is_finished(run)
        lr = load_spec(run / "spec.yaml")["compile"]["optimizer"]["Adam"]["learning_rate"]
        assert lr == pytest.approx(t.params["compile.optimizer.Adam.learning_rate"], rel=1e-3)
        assert json.loads((run / "metrics.json").read_text())["best"]["value"] == t.value
    # Once more: nothing is left to do.
    again = run_cli(*args)
    assert again.exit_code == 0 and again.stderr == ""
    assert again.stdout.splitlines()[0] == f"leaderboard of {sweep}: 3 trials by val_accuracy (maximize), best first"


@pytest.mark.parametrize("pruner", ["{median: {n_startup_trials: 1, n_warmup_steps: 0}}",
                                    pytest.param("{asha: {min_resource: 1, reduction_factor: 2}}",
                                                 marks=pytest.mark.slow)])   # the same path, another pruner
def test_pruning_stops_a_hopeless_trial(tiny_spec, mnist_dir, tmp_path, pruner):
    spec = tiny_spec(epochs=3)
    search = _search(tmp_path, f"""\
        sampler: grid
        pruner: {pruner}
        params:
          compile.optimizer.Adam.learning_rate: {{choices: [0.01, 1.0e-7, 1.0e+30]}}
        """)
    sweep = tmp_path / "sweep"
    result = run_cli("sweep", spec, "--search", search, "--data-dir", mnist_dir, "--out", sweep, "--quiet")
    assert result.exit_code == 0, result.output
    trials = _study(sweep).trials
    # The third rate makes the loss NaN in its first epoch: that trial fails, the sweep goes on.
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE"), (1, "PRUNED"), (2, "FAIL")]
    assert result.stderr.splitlines()[2].startswith("trial 2 fail: the loss became NaN at epoch 1, step ")
    assert not (sweep / "trial-002").exists()
    assert sorted(trials[1].intermediate_values) == [1]
    pruned = sweep / "trial-001"
    metrics = json.loads((pruned / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["epochs"]) == ("pruned", 1)
    assert (pruned / "model.keras").is_file() and not (pruned / "backup").exists()
    assert (sweep / "best.yaml").read_text() == (sweep / "trial-000" / "spec.yaml").read_text()
    lines = result.stdout.splitlines()
    v0 = trials[0].value
    assert lines == [
        f"leaderboard of {sweep}: 3 trials by val_accuracy (maximize), best first",
        "  trial  state     val_accuracy  epochs      time  overrides",
        f"      0  COMPLETE  {v0:>12.4f}       3  {json.loads((sweep / 'trial-000' / 'metrics.json').read_text())['wall_time_s']:>6.1f} s"
        "  compile.optimizer.Adam.learning_rate=0.01",
        f"      1  PRUNED    {trials[1].intermediate_values[1]:>12.4f}       1  {metrics['wall_time_s']:>6.1f} s"
        "  compile.optimizer.Adam.learning_rate=1.0e-07",
        "      2  FAIL                 -       -         -  compile.optimizer.Adam.learning_rate=1.0e+30",
        f"best: trial 0; its spec is {sweep}/best.yaml (cnntrain fit {sweep}/best.yaml)"]
    listed = run_cli("runs", "--runs", sweep)
    assert listed.exit_code == 0
    assert listed.stdout.endswith("\n\n" + "\n".join(lines) + "\n")
    assert "pruned" in listed.stdout.split("leaderboard")[0]


@pytest.mark.parametrize("text, message", [
    ("sampeler: tpe\nparams: {fit.epochs: {low: 1, high: 3}}\n",
     "search.yaml:1:1: unknown key 'sampeler' at the top level\n  hint: did you mean 'sampler'?\n"),
    ("params:\n  compile.optimizer.Adam.learning_rat: {low: 1.0e-4, high: 0.1}\n",
     "search.yaml:2:3: 'compile.optimizer.Adam.learning_rat' is not in the spec: 'compile.optimizer.Adam' has no "
     "'learning_rat'\n  hint: did you mean 'compile.optimizer.Adam.learning_rate'? (a searched value must be in the "
     "spec or its defaults)\n"),
    ("params:\n  model.layers.7.Dense.units: {low: 4, high: 8}\n",
     "search.yaml:2:3: 'model.layers.7.Dense.units': 'model.layers' is a list of 5 items; '7' is not an index in "
     "it\n  hint: use an index 0..4\n"),
    ("params:\n  fit.epochs: {low: 0, high: 3}\n",
     "search.yaml:2:21: 'fit.epochs' = 0 is not a value the spec takes: 'fit.epochs' must be an integer >= 1, "
     "received: 0 (int)\n"),
    ("params:\n  fit.batch_size: {low: 8, hihg: 64}\n",
     "search.yaml:2:28: unknown key 'hihg' in 'fit.batch_size'\n  hint: did you mean 'high'?\n"),
    ("params:\n  fit.batch_size: {low: 64, high: 8}\n",
     "search.yaml:2:35: 'high' must be above 'low', received: low 64, high 8\n"),
    ("sampler: grid\nparams:\n  compile.optimizer.Adam.learning_rate: {low: 1.0e-4, high: 0.1}\n",
     "search.yaml:3:41: the grid sampler needs a list of values, received a float range for "
     "'compile.optimizer.Adam.learning_rate'\n  hint: give choices: [...] for 'compile.optimizer.Adam.learning_rate', "
     "or use sampler: tpe\n"),
    ("pruner: medain\nparams: {fit.epochs: {choices: [1, 2]}}\n",
     "search.yaml:1:9: unknown pruner 'medain' (str); expected one of: median, asha, none\n"
     "  hint: did you mean 'median'?\n"),
    ("params: {fit.epochs: {choices: [1, 1]}}\n",
     "search.yaml:1:36: the choice 1 is listed twice\n"),
])
def test_bad_search_files_get_the_specs_kind_of_error(tiny_spec, tmp_path, monkeypatch, text, message):
    spec = tiny_spec()
    (tmp_path / "search.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    result = run_cli("sweep", spec, "--search", "search.yaml")
    assert (result.exit_code, result.stderr) == (1, message)
    assert not (tmp_path / "runs").exists()


def test_a_changed_search_file_is_refused_and_optuna_missing_is_explained(tiny_spec, mnist_dir, tmp_path,
                                                                           monkeypatch):
    import sys

    spec = tiny_spec(epochs=1)
    search = _search(tmp_path, "sampler: grid\npruner: none\nparams: {fit.batch_size: {choices: [32]}}\n")
    sweep = tmp_path / "sweep"
    assert run_cli("sweep", spec, "--search", search, "--data-dir", mnist_dir, "--out", sweep, "-q").exit_code == 0
    search.write_text("sampler: grid\npruner: none\nparams: {fit.batch_size: {choices: [16]}}\n")
    result = run_cli("sweep", spec, "--search", search, "--data-dir", mnist_dir, "--out", sweep, "-q")
    assert (result.exit_code, result.stderr) == (1, f"""\
{sweep}: this sweep was started with another search file:
--- {sweep / 'search.yaml'}
+++ {search}
@@ -1,3 +1,3 @@
 sampler: grid
 pruner: none
-params: {{fit.batch_size: {{choices: [32]}}}}
+params: {{fit.batch_size: {{choices: [16]}}}}
  hint: run the same command to resume it, or give a new --out
""")
    monkeypatch.setitem(sys.modules, "optuna", None)   # as if it were not installed
    result = run_cli("sweep", spec, "--search", search, "--data-dir", mnist_dir, "--out", tmp_path / "other")
    assert (result.exit_code, result.stderr) == (1, "error: cnntrain sweep needs Optuna, which is not installed\n"
                                                    "  hint: pip install 'cnntrain[sweep]' (or: pip install optuna)\n")


def test_timeout_starts_no_new_trial_after_its_minutes(tiny_spec, mnist_dir, tmp_path):
    search = _search(tmp_path, "sampler: grid\npruner: none\nparams: {fit.batch_size: {choices: [16, 32, 64]}}\n")
    sweep = tmp_path / "sweep"
    # 0.005 minutes: the first trial starts at once and takes longer than that; no second one starts.
    result = run_cli("sweep", tiny_spec(epochs=1), "--search", search, "--data-dir", mnist_dir, "--out", sweep,
                     "--quiet", "--timeout", "0.005")
    assert result.exit_code == 0, result.output
    assert [(t.number, t.state.name) for t in _study(sweep).trials] == [(0, "COMPLETE"), (1, "WAITING"),
                                                                        (2, "WAITING")]
    assert result.stderr.splitlines()[1:] == ["stopped by --timeout after 1 of 3 trials; the same command goes on "
                                              "with the rest"]


def test_a_second_sweep_on_a_busy_sweep_folder_is_refused(tiny_spec, mnist_dir, tmp_path):
    from cnntrain.runs import folder

    search = _search(tmp_path, "params: {fit.batch_size: {choices: [16, 32]}}\n")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    with folder.RunLock(sweep):   # as a sweep in another process holds it
        result = run_cli("sweep", tiny_spec(), "--search", search, "--data-dir", mnist_dir, "--out", sweep)
    assert (result.exit_code, result.stderr) == (1, f"{sweep}: another cnntrain sweep is running in this folder\n"
                                                    "  hint: wait for it to finish, or give another --out\n")
    assert sorted(p.name for p in sweep.iterdir()) == [".lock"]


# ---------------------------------------------------------------- tracking

def test_mlflow_logs_the_spec_metrics_files_and_model_into_a_temporary_store(tiny_spec, mnist_dir, tmp_path,
                                                                             monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="MLflow is optional: pip install 'cnntrain[track]'")
    import csv

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    run = tmp_path / "run"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    result = run_cli("fit", tiny_spec(epochs=2), "--data-dir", mnist_dir, "--out", run,
                     "--set", "fit.tracking=mlflow", "--set", f"fit.tracking_uri={uri}", "--trust-spec")
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "cwd").iterdir()) == []   # nothing in the folder the fit started in (no ./mlruns)
    assert (tmp_path / "store" / "mlartifacts").is_dir()
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert logged.info.status == "FINISHED"
    assert f"mlflow: run {logged.info.run_id} of experiment 'tiny' at {uri}" in result.stderr
    params = logged.data.params
    assert (params["fit.epochs"], params["compile.optimizer.Adam.learning_rate"], params["model.layers.3"]) == \
        ("2", "0.01", "Flatten")
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    logged_val = [m.value for m in client.get_metric_history(logged.info.run_id, "val_accuracy")]
    assert logged_val == pytest.approx([float(r["val_accuracy"]) for r in rows])
    files = {a.path for a in client.list_artifacts(logged.info.run_id, "run")}
    assert files == {f"run/{name}" for name in ("spec.yaml", "env.json", "model.keras", "best.keras", "history.csv",
                                                 "metrics.json", "curves.png")}
    assert logged.data.tags["cnntrain.run_folder"] == str(run.resolve())


def test_mlflow_asked_for_but_not_installed_is_a_spec_error(tiny_spec, mnist_dir, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)   # as if it were not installed
    result = run_cli("fit", tiny_spec(), "--data-dir", mnist_dir, "--out", tmp_path / "run", "--set",
                     "fit.tracking=mlflow")
    assert (result.exit_code, result.stderr) == (1, "--set fit.tracking=mlflow: fit.tracking is 'mlflow' but MLflow "
                                                    "is not installed\n  hint: pip install 'cnntrain[track]' (or: pip "
                                                    "install mlflow), or set fit.tracking: none\n")
    assert not (tmp_path / "run").exists()


def test_tensorboard_hparams_for_a_run_and_for_each_sweep_trial(tiny_spec, mnist_dir, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    def sessions(log_dir):
        found = {}
        for events in sorted(log_dir.glob("events.out.tfevents.*")):
            acc = event_accumulator.EventAccumulator(str(events))
            acc.Reload()
            content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
            info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
            found[info.group_name] = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                                      for k, v in info.hparams.items()}
        return found

    run = tmp_path / "run"
    assert run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", run,
                   "--set", "fit.tensorboard=true").exit_code == 0
    (hparams,) = sessions(run / "tensorboard").values()
    assert (hparams["fit.epochs"], hparams["compile.optimizer.Adam.learning_rate"], hparams["seed"]) == (1, 0.01, 7)

    search = _search(tmp_path, "sampler: grid\npruner: none\nparams: {fit.batch_size: {choices: [16, 32]}}\n")
    sweep = tmp_path / "sweep"
    assert run_cli("sweep", tiny_spec(epochs=1), "--search", search, "--data-dir", mnist_dir, "--out", sweep,
                   "-q").exit_code == 0
    assert sorted(p.name for p in (sweep / "tensorboard").iterdir()) == ["trial-000", "trial-001"]
    assert [sessions(sweep / "tensorboard" / t) for t in ("trial-000", "trial-001")] == [
        {"trial-000": {"fit.batch_size": 16.0}}, {"trial-001": {"fit.batch_size": 32.0}}]


def test_the_search_files_of_the_repository_load_against_their_configs():
    from pathlib import Path

    from cnntrain.experiments.search import load_search

    root = Path(__file__).resolve().parents[1]
    search = load_search(root / "searches" / "mnist.yaml", root / "configs" / "mnist.yaml")
    assert [(p.path, p.kind) for p in search.params] == [
        ("compile.optimizer.Adam.learning_rate.CosineDecay.initial_learning_rate", "float"),
        ("fit.batch_size", "categorical"), ("model.layers.5.Dropout.rate", "float")]
    assert (search.sampler, search.pruner, search.pruner_args, search.seed) == (
        "tpe", "median", {"n_startup_trials": 2, "n_warmup_steps": 0}, 1)


def test_search_file_errors_and_help_answer_without_importing_tensorflow(tiny_spec, tmp_path):
    from helpers.cli import modules_after

    (tmp_path / "bad.yaml").write_text("params:\n  fit.epoch: {low: 1, high: 2}\n")
    code = ("from click.testing import CliRunner; from cnntrain.cli import cli; "
            f"r = CliRunner().invoke(cli, ['sweep', {str(tiny_spec())!r}, '--search', {str(tmp_path / 'bad.yaml')!r}]); "
            "assert r.exit_code == 1 and 'did you mean' in r.stderr, r.output; "
            "[CliRunner().invoke(cli, [c, '--help']) for c in ('sweep', 'lr-find', 'card', 'runs')]")
    assert modules_after(code) == []

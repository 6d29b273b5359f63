"""`cnntrain sweep`: an Optuna study whose trials are ordinary cnntrain fits, resumable as a whole.

    <sweep>/                      default: <output.dir>/<name>-sweep/, so the same command finds it again
      study.db                    the Optuna study (SQLite): every trial, its parameters and epoch values
      search.yaml  base.yaml      the search file and the resolved spec it started with (a change is refused)
      trial-000/ ...              each trial an ordinary run folder: spec.yaml re-runs it with cnntrain fit
      leaderboard.json            every trial, best first; best.yaml: the best trial's spec.yaml
      tensorboard/                an HParams session per completed trial: tensorboard --logdir <sweep>/tensorboard

A trial's overrides are --set texts on the same spec, and it trains through the same fit as
`cnntrain fit`, with one more callback that reports the monitored value after each epoch and
stops the fit when the pruner says so (the run is then a finished folder with "stopped": "pruned").
A killed sweep resumes with the same command: finished trials are counted and never run again, and
a trial the kill interrupted continues in its own run folder from its last finished epoch.
"""
from __future__ import annotations

import difflib
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path

import yaml

from cnntrain.errors import CnntrainError, FolderLocked, not_regular
from cnntrain.experiments.search import Search, set_text
from cnntrain.runs import atomic, folder, schema
from cnntrain.spec import load_spec
from cnntrain.train import fit as training
from cnntrain.model.build import monitor_mode
from cnntrain.train.callbacks import STATE
from cnntrain.train.tracking import write_hparams
from cnntrain.runs.numbers import metric_of

STUDY = "study.db"
MARKER = ".cnntrain-sweep"   # written first: the folder is a sweep's, and may be resumed into
OWN_NAMES = (STUDY, "search.yaml", "base.yaml", "leaderboard.json", "best.yaml", "tensorboard", folder.LOCK)
STUDY_NAME = "cnntrain"
MAX_FAILED_IN_A_ROW = 3


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise CnntrainError("cnntrain sweep needs Optuna, which is not installed",
                            hint="pip install 'cnntrain[sweep]' (or: pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def sweep_dir_of(spec, out) -> Path:
    return Path(out) if out else Path(spec["output"]["dir"]) / f"{spec['name']}-sweep"


def claim_sweep_dir(path: Path) -> None:
    """The `fit --out` rule for a sweep folder: a new folder (made here), an empty one, or a sweep
    folder of ours (its marker); anything else is refused before a file is written in it."""
    if path.exists() and not path.is_dir():
        raise CnntrainError("--out names a file, not a folder", file=str(path), hint="choose a new folder with --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnntrainError(f"cannot create the sweep folder: {exc.strerror}", file=str(path)) from None
    shown = folder.foreign_shown(path, marker=MARKER)
    if shown:
        raise CnntrainError(f"this folder is not empty and is not a cnntrain sweep folder (it holds {shown}); "
                            "a sweep starts only in a new or empty folder, so that it never overwrites your files",
                            file=str(path), hint=f"choose a new folder, e.g. --out {path / 'sweep'} (created for you)")


def _check_unchanged(sweep: Path, name: str, text: str, source: str):
    old_path = sweep / name
    if not old_path.exists():
        atomic.write_text(old_path, text)
        return
    old = old_path.read_text(encoding="utf-8")
    if old != text:
        diff = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(old_path), source))
        what = "search file" if name == "search.yaml" else "spec"
        raise CnntrainError(f"this sweep was started with another {what}:\n{diff.rstrip()}",
                            file=str(sweep), hint="run the same command to resume it, or give a new --out")


def _open_study(optuna, path: Path, **settings):
    """The study in `path`, created or resumed; a study.db that is not a regular file (a FIFO would
    block forever) or not an SQLite database is an error naming it."""
    from sqlalchemy.exc import SQLAlchemyError

    hint = "move the file away to start the study anew, or give another --out"
    kind = not_regular(path)
    if kind:
        raise CnntrainError(f"is {kind}, not a regular file; a sweep's study is an SQLite database file",
                            file=str(path), hint=hint)
    try:
        return optuna.create_study(storage=f"sqlite:///{path}", study_name=STUDY_NAME, load_if_exists=True,
                                   **settings)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or type(exc).__name__
        raise CnntrainError(f"cannot open the sweep's study: {reason}", file=str(path), hint=hint) from None


def _sampler(optuna, search: Search, seed: int):
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, len(search.params) + 1)))
    return optuna.samplers.RandomSampler(seed=seed)   # grid: every combination is enqueued in order


def _pruner(optuna, search: Search):
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(**search.pruner_args)
    if search.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(**search.pruner_args)
    return optuna.pruners.NopPruner()


def make_pruning_callback(trial, monitor: str):
    """A Keras callback: report the monitor after each epoch; stop the fit when the trial is to be pruned."""
    from cnntrain.backend import keras

    class Pruning(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.pruned_at = None

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            value = logs.get(monitor, logs.get(metric_of(monitor)))
            if value is None or not math.isfinite(float(logs.get("loss", 0.0))):
                return   # a NaN loss: the fit stops at this epoch, which it does not commit
            with warnings.catch_warnings():   # a resumed trial reports its first epochs again: ignored
                warnings.simplefilter("ignore")
                trial.report(float(value), epoch + 1)
            # At the last epoch the fit is done anyway: its value is a finished trial's, not a pruned one's.
            if epoch + 1 < self.params.get("epochs", epoch + 2) and trial.should_prune():
                self.pruned_at = epoch + 1
                self.model.stop_training = True

    return Pruning()


class Sweep:
    """A sweep folder: its study, its trials' run folders, its leaderboard."""
    def __init__(self, spec_path, overrides, search: Search, *, reporter_factory, out=None, options=None,
                 on_trial=None):
        self.spec_path, self.overrides, self.search = spec_path, list(overrides), search
        self.base = load_spec(spec_path, self.overrides)
        self.dir = sweep_dir_of(self.base, out)
        self.options = options or training.FitOptions()
        self.reporter_factory = reporter_factory   # a new views Reporter per trial
        self.on_trial = on_trial or (lambda row: None)
        self.monitor = self.base["fit"]["monitor"]

    def run(self, trials: int, timeout_min: float | None = None) -> dict:
        optuna = import_optuna()
        claim_sweep_dir(self.dir)
        try:
            lock = folder.RunLock(self.dir).__enter__()
        except FolderLocked:
            raise CnntrainError("another cnntrain sweep is running in this folder", file=str(self.dir),
                                hint="wait for it to finish, or give another --out") from None
        try:
            folder.mark(self.dir, marker=MARKER, base=OWN_NAMES)
            return self._run(optuna, trials, timeout_min)
        finally:
            lock.__exit__(None, None, None)

    def _run(self, optuna, trials, timeout_min):
        _check_unchanged(self.dir, "search.yaml", self.search.text, self.search.file)
        _check_unchanged(self.dir, "base.yaml", self.base.to_yaml(), " ".join([str(self.spec_path)] + [
            f"--set {o}" for o in self.overrides]))
        seed = self.search.seed if self.search.seed is not None else self.base["seed"]
        study = _open_study(optuna, self.dir / STUDY, sampler=_sampler(optuna, self.search, seed),
                            pruner=_pruner(optuna, self.search),
                            direction="maximize" if monitor_mode(self.monitor) == "max" else "minimize")
        if self.search.sampler == "grid":
            grid = self.search.grid()
            trials = min(trials, len(grid))
            for params in grid:
                study.enqueue_trial(params, skip_if_exists=True)
        state = optuna.trial.TrialState
        # We hold the sweep's lock, so a trial still marked running was interrupted by a kill.
        interrupted = [t._trial_id for t in study.get_trials(deepcopy=False, states=(state.RUNNING,))]
        deadline = None if timeout_min is None else time.monotonic() + 60 * timeout_min
        failed_in_a_row, ran = 0, 0
        while True:
            done = len(study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED, state.FAIL)))
            if done >= trials or (deadline is not None and time.monotonic() >= deadline):
                break
            trial = optuna.trial.Trial(study, interrupted.pop(0)) if interrupted else study.ask()
            row = self._trial(optuna, study, trial)
            ran += 1
            self._write_results(optuna, study)
            self.on_trial(row)
            failed_in_a_row = failed_in_a_row + 1 if row["state"] == "FAIL" else 0
            if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                raise CnntrainError(f"{failed_in_a_row} trials in a row failed; the last: {row['error']}",
                                    file=str(self.dir), hint="fix the spec or the search ranges; the same command "
                                    "then resumes the sweep")
        return {**self._write_results(optuna, study), "ran": ran, "sweep": str(self.dir), "done": done,
                "wanted": trials}

    def _sets(self, trial) -> list[str]:
        sets = []
        for p in self.search.params:
            if p.kind == "categorical":
                value = trial.suggest_categorical(p.path, p.choices)
            elif p.kind == "int":
                value = trial.suggest_int(p.path, p.low, p.high, step=p.step or 1, log=p.log)
            else:
                value = trial.suggest_float(p.path, p.low, p.high, step=p.step, log=p.log)
            sets.append(set_text(p.path, value))
        return sets

    def _trial(self, optuna, study, trial) -> dict:
        run_dir = self.dir / f"trial-{trial.number:03d}"
        sets = self._sets(trial)
        trial.set_user_attr("run", run_dir.name)
        trial.set_user_attr("set", sets)
        row = {"number": trial.number, "set": sets, "run": str(run_dir), "error": None}
        pruning = make_pruning_callback(trial, self.monitor)
        try:
            self._fit(run_dir, sets, pruning)
        except CnntrainError as exc:
            if exc.exit_code == 130:   # Ctrl-C: the trial stays running, and resumes with the sweep
                raise CnntrainError(f"interrupted; trial {trial.number} keeps its finished epochs in {run_dir}",
                                    hint="run the same cnntrain sweep command to go on", exit_code=130) from None
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return {**row, "state": "FAIL", "value": None, "error": str(exc).splitlines()[0]}
        metrics = trial_metrics(run_dir)
        if pruning.pruned_at is not None or metrics.get("stopped") == "pruned":
            if metrics.get("stopped") != "pruned":
                atomic.write_json(run_dir / "metrics.json", {**metrics, "stopped": "pruned"})
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self._hparams(trial, run_dir, metrics)
            return {**row, "state": "PRUNED", "value": (metrics.get("best") or {}).get("value")}
        value = (metrics.get("best") or {}).get("value")
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return {**row, "state": "FAIL", "value": None, "error": f"the run has no value of {self.monitor}"}
        study.tell(trial, float(value))
        self._hparams(trial, run_dir, metrics)
        return {**row, "state": "COMPLETE", "value": float(value)}

    def _hparams(self, trial, run_dir, metrics):
        """The trial's searched values and its best monitored value, as a TensorBoard HParams session."""
        values = {}
        for name, value in trial.params.items():   # a choice is kept as YAML text: its number, for the charts
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
            values[name] = parsed if isinstance(parsed, (bool, int, float, str)) else value
        write_hparams(self.dir / "tensorboard" / run_dir.name, values, trial_id=run_dir.name,
                      metrics={self.monitor: (metrics.get("best") or {}).get("value")}, step=metrics.get("epochs") or 0)

    def _fit(self, run_dir: Path, sets: list[str], pruning):
        if folder.is_finished(run_dir):
            return   # killed between the fit's end and the study's record of it
        from cnntrain.backend import keras

        keras.backend.clear_session()   # each trial builds its model as a fit of its own would: names, memory
        reporter = self.reporter_factory()
        if (run_dir / folder.BACKUP / STATE).is_file():
            spec = load_spec(run_dir / "spec.yaml")
            options = replace(self.options, out=None, resume=str(run_dir), callbacks=(pruning,))
        else:
            if run_dir.exists():   # killed before its first commit: nothing in it to keep, and only ours goes
                folder.remove_run(run_dir, created=True)
            spec = load_spec(self.spec_path, self.overrides + sets)
            options = replace(self.options, out=str(run_dir), resume=None, callbacks=(pruning,))
        training.fit(spec, options, reporter)

    def _write_results(self, optuna, study) -> dict:
        rows = leaderboard(optuna, study, self.dir)
        best = next((r for r in rows if r["state"] == "COMPLETE"), None)
        board = {"monitor": self.monitor, "direction": study.direction.name.lower(), "trials": rows}
        atomic.write_json(self.dir / "leaderboard.json", board)
        if best is not None:
            atomic.copy_file(self.dir / best["run"] / "spec.yaml", self.dir / "best.yaml")
        return {**board, "best": best}


def trial_metrics(run_dir: Path) -> dict:
    """A trial's metrics.json, checked as every file read back is; {} before the trial wrote one."""
    path = Path(run_dir) / "metrics.json"
    return schema.read(path, schema.METRICS) if path.is_file() else {}


def leaderboard(optuna, study, sweep: Path) -> list[dict]:
    """Every finished trial, best first: completed by value, then pruned by their best value so far, then failed."""
    state = optuna.trial.TrialState
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (state.RUNNING, state.WAITING):
            continue
        reported = list(t.intermediate_values.values())
        value = t.value if t.state == state.COMPLETE else None
        if t.state == state.PRUNED and reported:
            value = (max if maximize else min)(reported)
        metrics = trial_metrics(sweep / t.user_attrs["run"]) if t.user_attrs.get("run") else {}
        rows.append({"number": t.number, "state": t.state.name, "value": value,
                     "epochs": metrics.get("epochs"), "run": t.user_attrs.get("run"),
                     "set": t.user_attrs.get("set", []), "params": dict(t.params),
                     "seconds": metrics.get("wall_time_s")})
    rank = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}
    rows.sort(key=lambda r: (rank[r["state"]], 0 if r["value"] is None else (-r["value"] if maximize else r["value"]),
                             r["number"]))
    return rows

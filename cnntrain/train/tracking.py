"""Tracking: TensorBoard HParams for runs and sweeps, and MLflow around a fit (`fit.tracking: mlflow`).

TensorBoard's event files are streams TensorBoard appends to, so they are the one output that does
not go through runs/atomic.py (as with `fit.tensorboard`); nothing reads them back. MLflow is
optional: `pip install 'cnntrain[track]'`; a spec that asks for it without it gets a spec error
before any data is read.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError
from cnntrain.model import policy
from cnntrain.runs.contents import flatten

MAX_PARAM = 500   # characters of a spec value as an MLflow parameter or an HParams value


def hparams_of(values: dict) -> dict:
    """Spec values as HParams/MLflow parameters: {dotted path: bool, int, float or str}."""
    return {path: value if isinstance(value, (bool, int, float)) else str(value)[:MAX_PARAM]
            for path, value in flatten(values).items()}


def write_hparams(log_dir, hparams: dict, trial_id: str, metrics: dict | None = None, step: int = 0):
    """One HParams session in `log_dir`: the values, and optionally final metrics as scalars."""
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams(hparams, trial_id=trial_id)
        for name, value in (metrics or {}).items():
            if value is not None:
                tf.summary.scalar(name, float(value), step=step)
    writer.flush()
    writer.close()


class HParams(keras.callbacks.Callback):
    """With fit.tensorboard: the spec's values as the run's HParams session, beside Keras' own logs."""

    def __init__(self, spec, log_dir: Path):
        super().__init__()
        self.hparams, self.log_dir, self.name = hparams_of(spec.values), log_dir, spec["name"]

    def on_train_begin(self, logs=None):
        write_hparams(self.log_dir, self.hparams, trial_id=f"{self.name}/{self.log_dir.parent.name}")


def import_mlflow(spec):
    try:
        import mlflow
        import mlflow.keras
    except ImportError:
        raise spec.error(("fit", "tracking"), "fit.tracking is 'mlflow' but MLflow is not installed",
                         "pip install 'cnntrain[track]' (or: pip install mlflow), or set fit.tracking: none") from None
    return mlflow


def default_uri(spec) -> str:
    return spec["fit"]["tracking_uri"] or f"sqlite:///{Path(spec['output']['dir']).resolve() / 'mlflow.db'}"


def with_mlflow(fit_once, spec, options, reporter) -> Path:
    """`fit_once` inside an MLflow run: the spec (as parameters and as spec.yaml), the metrics per epoch
    through mlflow.keras.MlflowCallback, then the run folder's files, the model among them."""
    policy.check_spec(spec)   # before MLflow makes its store or reaches a server
    mlflow = import_mlflow(spec)
    uri = default_uri(spec)
    artifacts = None
    if uri.startswith("sqlite:///"):
        # Beside the database: MLflow's own default is ./mlruns in whatever folder the fit started in.
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        artifacts = (database.parent / "mlartifacts").resolve().as_uri()
    try:
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(spec["name"]) is None:
            mlflow.create_experiment(spec["name"], artifact_location=artifacts)
        mlflow.set_experiment(spec["name"])
        active = mlflow.start_run()
    except Exception as exc:  # MLflow raises its own, SQLAlchemy's and OS errors
        raise CnntrainError(f"cannot start an MLflow run at {uri}: {str(exc).splitlines()[0][:300]}",
                            hint="check fit.tracking_uri (sqlite:///FILE or http://HOST:PORT)") from None
    status = "FAILED"
    try:
        mlflow.log_params(hparams_of(spec.values))
        mlflow.log_text(spec.to_yaml(), "spec.yaml")
        callback = mlflow.keras.MlflowCallback(log_every_epoch=True)
        run_dir = fit_once(spec, replace(options, callbacks=tuple(options.callbacks) + (callback,)), reporter)
        mlflow.set_tag("cnntrain.run_folder", str(Path(run_dir).resolve()))
        for path in sorted(Path(run_dir).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                mlflow.log_artifact(str(path), artifact_path="run")
        status = "FINISHED"
        reporter.note(f"mlflow: run {active.info.run_id} of experiment '{spec['name']}' at {uri}")
        return run_dir
    finally:
        mlflow.end_run(status=status)

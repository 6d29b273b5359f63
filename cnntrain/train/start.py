"""Where a fit starts other than from scratch: a finished run trained longer, or another model's weights."""
from __future__ import annotations

import math
from pathlib import Path

from cnntrain.backend import keras
from cnntrain.errors import CnntrainError
from cnntrain.runs import atomic, folder, model_file, schema
from cnntrain.runs.history import read_history
from cnntrain.model.build import monitor_mode
from cnntrain.train.callbacks import STATE
from cnntrain.train.fitrun import FitRun


def finished_state(run_dir: Path, monitor: str) -> dict:
    """The resume state of a finished run, rebuilt from history.csv (its backup/ was removed at the end).

    EarlyStopping and ReduceLROnPlateau start their counters afresh: kept, an early-stopped run
    would stop again at once.
    """
    rows = read_history(run_dir / "history.csv")
    scored = [r for r in rows if isinstance(r.get(monitor), float) and math.isfinite(r[monitor])]
    best = (max if monitor_mode(monitor) == "max" else min)(scored, key=lambda r: r[monitor]) if scored else None
    return {"epochs_done": rows[-1]["epoch"] if rows else 0, "best": best[monitor] if best else None,
            "best_epoch": best["epoch"] if best else None, "history": rows, "weights": None,
            "monitor": monitor, "callbacks": []}


def begin_state(run: FitRun, user_callbacks: list, env: dict) -> tuple[dict, bool]:
    """The state this fit starts from, and whether it trains a finished run longer: a resumed run's
    committed state (weights loaded into the model; its callbacks' counters are restored when
    training begins), a finished run's rebuilt one, or a new run's, committed with spec.yaml and
    env.json before the first epoch."""
    spec, options, run_dir = run.spec, run.options, run.run_dir
    state = {"epochs_done": 0, "best": None, "best_epoch": None, "history": [], "weights": None,
             "monitor": run.monitor, "callbacks": []}
    saved = run_dir / folder.BACKUP / STATE
    if options.resume and saved.exists():
        state = schema.check_resume(saved, schema.read(saved, schema.STATE, schema.RESUME_HINT),
                                    epochs=spec["fit"]["epochs"], monitor=run.monitor, callbacks=len(user_callbacks))
        weights = folder.backup_file(run_dir, state["weights"]) if state["weights"] else None
        try:
            run.model.load_weights(weights) if weights else None
        except Exception as exc:
            raise CnntrainError(f"cannot load the resume state: {exc}", file=str(run_dir / folder.BACKUP),
                                hint="the backup does not match this spec's model; start a new fit") from None
        if (run_dir / "spec.yaml").read_text(encoding="utf-8") != spec.to_yaml():
            atomic.write_text(run_dir / "spec.yaml", spec.to_yaml())  # a new --epochs: the only change allowed
        run.reporter.note(f"resuming {run_dir} after epoch {state['epochs_done']} of {spec['fit']['epochs']}")
        return state, False
    if options.extend:
        return finished_state(run_dir, run.monitor), True
    if not options.resume:
        atomic.write_text(run_dir / "spec.yaml", spec.to_yaml())
        atomic.write_json(run_dir / "env.json", env)
        (run_dir / folder.BACKUP).mkdir(exist_ok=True)
        atomic.write_json(saved, state)
    return state, False


def continue_finished(run: FitRun, saver) -> int:
    """Load model.keras into the model (weights and optimizer state, so the schedule goes on from its
    step), then commit a resume state, then the new length: a kill at any point leaves a run that
    `fit --resume` finishes."""
    run_dir, model = run.run_dir, run.model
    try:
        model.load_weights(run_dir / "model.keras")
    except Exception as exc:  # Keras raises ValueError and others when the file does not fit the model
        raise CnntrainError(f"cannot load the run's final model to train it longer: {exc}",
                            file=str(run_dir / "model.keras"),
                            hint="the model file does not match the run's spec; start a new fit") from None
    done = saver.state["epochs_done"]
    saver.set_model(model)  # Keras sets it only when the fit begins
    saver.save(done)
    atomic.write_text(run_dir / "spec.yaml", run.spec.to_yaml())
    last = run.spec["fit"]["epochs"]
    run.reporter.note(f"training {run_dir} longer: "
                      + (f"epoch {last}" if last == done + 1 else f"epochs {done + 1} to {last}"))
    return done


def init_from(model, target: str, runs_root, front: list) -> str:
    """Copy the weights of another trained model, layer by layer, into `model`; return the file used.

    The normalization at the front is this data's own and is kept; the optimizer starts afresh.
    """
    from cnntrain.loading.runners import load_keras

    try:
        source, _, ref = load_keras(target, runs_root, command="fit --init-from")
    except model_file.CodeInModel as exc:   # fit has no --unsafe: the weights of such a model never start a run
        raise CnntrainError(exc.message, file=exc.file, hint="--init-from takes only models without code; "
                            "start from a model without Lambda layers") from None
    path = ref.path
    ours = [layer for layer in model.layers if layer.weights and layer not in front]
    theirs = [layer for layer in source.layers if layer.weights and not isinstance(layer, keras.layers.Normalization)]
    hint = "--init-from needs a model with the same layers: a run of a spec with the same model: section"
    if len(ours) != len(theirs):
        raise CnntrainError(f"cannot start from this model: it has {len(theirs)} layers with weights, the spec's "
                            f"model has {len(ours)}", file=str(path), hint=hint)
    for number, (mine, other) in enumerate(zip(ours, theirs), 1):
        want = [tuple(w.shape) for w in mine.weights]
        got = [tuple(w.shape) for w in other.weights]
        if want != got:
            raise CnntrainError(f"cannot start from this model: its layer {number} with weights "
                                f"({type(other).__name__}) has weights shaped {_shapes(got)}, the spec's "
                                f"{type(mine).__name__} needs {_shapes(want)}", file=str(path), hint=hint)
    for mine, other in zip(ours, theirs):
        mine.set_weights(other.get_weights())
    return str(path)


def _shapes(shapes) -> str:
    return ", ".join(str(s) for s in shapes)

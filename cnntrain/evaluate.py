"""Evaluate a saved model: loss, accuracy, top-k, per-class figures, the confusion matrix.

One pass of `model.predict` over an ordered, unaugmented pipeline gives the class
probabilities; every figure is computed from them here, so the numbers agree with
Keras' own `model.evaluate` (the loss to float rounding, the accuracy exactly).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnntrain import runs
from cnntrain.errors import CnntrainError

# Keras clips probabilities to [epsilon, 1 - epsilon] before taking the log
# (keras.backend.epsilon(), 1e-7 unless configured otherwise).
_EPSILON = 1e-7
MOST_CONFUSED = 5


# ---------------------------------------------------------------- pure arithmetic


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: rows are true classes, columns predictions."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    k = int(num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape[0]} labels but {y_pred.shape[0]} predictions")
    for name, arr in (("label", y_true), ("prediction", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise CnntrainError(f"a {name} is outside the {k} classes of the model")
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    """Per-class precision, recall, F1 and support, and their macro-F1, from hard predictions.

    Conventions (those of scikit-learn with zero_division=0):
    - the precision of a class that is never predicted is 0.0 (0/0 taken as 0);
    - the recall of a class absent from y_true is 0.0, and its support 0;
    - F1 is 0.0 when precision and recall are both 0;
    - macro-F1 is the plain mean of the per-class F1 over all num_classes classes.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    return _metrics_from_confusion(cm)


def _metrics_from_confusion(cm: np.ndarray) -> dict:
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)   # column sums: how often each class was predicted
    support = cm.sum(axis=1)                          # row sums: how often each class is the truth
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)  # never predicted -> 0.0
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "precision": [float(v) for v in precision],
        "recall": [float(v) for v in recall],
        "f1": [float(v) for v in f1],
        "support": [int(v) for v in support],
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "confusion": cm,
    }


def sparse_crossentropy_logits(logits, y_true) -> np.ndarray:
    """Per-sample crossentropy from logits: logsumexp(z) - z[y], in float64."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    top = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return lse - z[np.arange(len(y)), y]


def sparse_crossentropy(probabilities, y_true) -> np.ndarray:
    """Per-sample crossentropy exactly as Keras computes it from probabilities.

    Keras clips to [eps, 1-eps], takes the log, and feeds that to a softmax
    crossentropy, which renormalizes: loss = log(sum(clipped)) - log(clipped[y]).
    Computed in float64.
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPSILON, 1.0 - _EPSILON)
    y = np.asarray(y_true, dtype=np.int64)
    picked = p[np.arange(len(y)), y]
    return np.log(p.sum(axis=1)) - np.log(picked)


def top_k_hits(probabilities, y_true, k: int) -> np.ndarray:
    """Whether the true class is among the k most probable (ties count in its favour, as tf.math.in_top_k)."""
    p = np.asarray(probabilities)
    y = np.asarray(y_true, dtype=np.int64)
    true_p = p[np.arange(len(y)), y]
    higher = (p > true_p[:, None]).sum(axis=1)
    return higher < k


def default_class_names(num_classes: int) -> list[str]:
    return [str(i) for i in range(int(num_classes))]


def class_names_of(model, metadata: dict) -> list[str]:
    """The metadata's class names, checked against the model's output width; "0".."N-1" without."""
    n = int(model.output_shape[-1])
    names = (metadata or {}).get("class_names")
    if not names:
        return default_class_names(n)
    names = [str(c) for c in names]
    if len(names) != n:
        raise CnntrainError(f"the model outputs {n} classes but its metadata names {len(names)}",
                            hint="the model file was altered after training; retrain or re-save it")
    return names


# ---------------------------------------------------------------- the model


def evaluate_model(model, metadata, x, y, *, batch_size=256, top_k=5) -> dict:
    """Every figure from one pass of model.predict over float32 batches in order."""
    from cnntrain import pipeline

    names = class_names_of(model, metadata or {})
    k_classes = len(names)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.shape[1] == k_classes:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.astype(np.int64)
    if len(y) == 0:
        raise CnntrainError("no examples to evaluate")
    if y.min() < 0 or y.max() >= k_classes:
        raise CnntrainError(f"labels run from {int(y.min())} to {int(y.max())} but the model has "
                            f"{k_classes} classes", hint="evaluate on the data set the model was trained on")
    _check_input_shape(model, metadata or {}, np.asarray(x).shape)

    ds = pipeline.eval_dataset(x, y, batch_size=int(batch_size))
    both = _with_logits(model)
    if both is not None:
        probs, logits = (np.asarray(a) for a in both.predict(ds, verbose=0))
    else:
        probs, logits = np.asarray(model.predict(ds, verbose=0)), None
    if probs.ndim != 2 or probs.shape != (len(y), k_classes):
        raise CnntrainError(f"the model produced outputs shaped {probs.shape}; expected "
                            f"({len(y)}, {k_classes}) class probabilities")
    return metrics_from_probabilities(probs, y, names, top_k=top_k, logits=logits)


def _with_logits(model):
    """The model with a second output, the logits its final softmax takes, or None.

    Keras' model.evaluate computes the crossentropy of a softmax output from these
    logits (not from the probabilities, whose log is clipped at 1e-7), so a
    confidently wrong answer can cost far more than -log(1e-7) = 16.1. Taking the
    same logits here makes the loss agree with model.evaluate for every answer.
    Returns None when the last layer is not a recognisable softmax (Keras then
    clips too, as sparse_crossentropy does).
    """
    from cnntrain.backend import keras

    try:
        last = model.layers[-1]
        act = getattr(last, "activation", None)
        is_softmax = getattr(act, "__name__", "") == "softmax"
        if isinstance(last, keras.layers.Softmax) and last.axis in (-1, [-1], (-1,)):
            logits = last.input
        elif isinstance(last, keras.layers.Activation) and is_softmax:
            logits = last.input
        elif is_softmax and last.weights:
            # Dense / Conv with activation="softmax": the same layer without the activation.
            linear = type(last).from_config({**last.get_config(), "activation": "linear",
                                                 "name": f"{last.name}_logits"})
            logits = linear(last.input)
            linear.set_weights(last.get_weights())
        else:
            return None
        return keras.Model(model.inputs, [model.outputs[0], logits])
    except Exception:  # noqa: BLE001 - any model we cannot take apart: Keras clips, so do we
        return None


def metrics_from_probabilities(probs, y, class_names, *, top_k=5, logits=None) -> dict:
    """Every figure of evaluate_model from (N, classes) probabilities (and the logits if known)."""
    probs = np.asarray(probs)
    y = np.asarray(y, dtype=np.int64)
    losses = sparse_crossentropy(probs, y) if logits is None else sparse_crossentropy_logits(logits, y)
    names = list(class_names)
    k = max(1, min(int(top_k), len(names)))
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, pred, len(names))
    cm = m["confusion"]
    off = [(int(cm[i, j]), i, j) for i in range(len(names)) for j in range(len(names))
           if i != j and cm[i, j] > 0]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    return {
        "samples": int(len(y)),
        "loss": float(losses.mean()),
        "accuracy": float(np.mean(pred == y)),
        "top_k": k,
        "top_k_accuracy": float(np.mean(top_k_hits(probs, y, k))),
        "per_class": [
            {"class": names[c], "precision": m["precision"][c], "recall": m["recall"][c],
             "f1": m["f1"][c], "support": m["support"][c]}
            for c in range(len(names))
        ],
        "macro_f1": m["macro_f1"],
        "confusion": cm.tolist(),
        "most_confused": [{"true": names[i], "predicted": names[j], "count": n}
                          for n, i, j in off[:MOST_CONFUSED]],
        "class_names": names,
    }


def input_shape_of(model, metadata: dict) -> tuple[int, int, int]:
    shape = (metadata or {}).get("input_shape")
    if not shape:
        shape = model.input_shape[1:]
    shape = tuple(shape)
    if len(shape) != 3 or any(d is None for d in shape):
        raise CnntrainError(f"the model takes inputs shaped {shape}; expected a fixed (height, width, channels)")
    return tuple(int(d) for d in shape)


def _check_input_shape(model, metadata, x_shape):
    want = input_shape_of(model, metadata)
    got = tuple(x_shape[1:]) if len(x_shape) == 4 else tuple(x_shape[1:]) + (1,)
    if got != want:
        raise CnntrainError(f"the images are {got} but the model takes {want}",
                            hint="evaluate on the data set (and image_size / color_mode) the model was trained with")


# ---------------------------------------------------------------- runs and files


def resolve_model(target: str | None, runs_root="runs") -> tuple[Path, Path | None]:
    """(model file, run folder or None) for a run folder / run name, a .keras file, or None (newest finished run)."""
    if target is not None:
        path = Path(target)
        if path.is_file() or path.suffix == ".keras":
            if not path.is_file():
                raise CnntrainError("model file not found", file=str(path))
            return path, None
        if path.is_dir() and (path / "model.keras").is_file():
            return path / "model.keras", path
    run = runs.resolve_run(target, runs_root, need_model=True)
    model_file = run / "model.keras"
    if not model_file.is_file():
        hint = "the run has not finished; train it to the end with 'cnntrain fit --resume'"
        if (run / "best.keras").is_file():
            hint += f", or give its best model: {run / 'best.keras'}"
        raise CnntrainError("the run folder holds no model.keras", file=str(run), hint=hint)
    return model_file, run


def _load_data(metadata: dict, *, data_dir, offline, split):
    from cnntrain.datasets import load_dataset

    name = metadata.get("dataset")
    if not name:
        raise CnntrainError("the model file does not say which data set it was trained on",
                            hint="it has no cnntrain metadata (a plain Keras file); evaluate it from "
                                 "Python with evaluate_model, or use a model saved by 'cnntrain fit'")
    size = metadata.get("image_size")
    path = metadata.get("data_path")
    if path and data_dir and not Path(path).exists():
        # The data moved since training: look in data_dir instead (for a folder of images,
        # a folder of the same name there).
        path = str(Path(data_dir) / Path(path).name) if name == "image_folder" else None
    data = load_dataset(name, path=path, data_dir=data_dir, offline=offline,
                        image_size=tuple(size) if size else None, color_mode=metadata.get("color_mode"))
    if split == "test":
        if data.x_test is None or data.y_test is None or len(data.x_test) == 0:
            raise CnntrainError(f"the data set has no test split ({data.source})",
                                hint="evaluate on the training split with --split train, or supply test data")
        return data, data.x_test, data.y_test
    if split == "train":
        return data, data.x_train, data.y_train
    raise CnntrainError(f"unknown split {split!r}", hint="the split is 'test' or 'train'")


def _align_labels(y, data_names, model_names):
    """Relabel y from the data set's class order to the model's, by class name."""
    data_names = [str(c) for c in (data_names or [])]
    if not data_names or data_names == list(model_names):
        return y
    missing = [c for c in data_names if c not in model_names]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5])
        raise CnntrainError(f"the data holds classes the model does not know: {shown}",
                            hint="evaluate on the data set the model was trained on")
    mapping = np.array([model_names.index(c) for c in data_names], dtype=np.int64)
    return mapping[np.asarray(y, dtype=np.int64)]


def output_paths(model_file: Path, run_dir: Path | None) -> tuple[Path, Path, Path]:
    """(folder, eval json, confusion png) where the evaluation of `model_file` is written."""
    if run_dir is not None:
        return run_dir, run_dir / "eval.json", run_dir / "confusion.png"
    folder = model_file.parent
    return folder, folder / f"{model_file.stem}.eval.json", folder / f"{model_file.stem}.confusion.png"


def evaluate_run(target: str | None, *, runs_root="runs", data_dir=None, offline=False, split="test",
                 top_k=5, batch_size=256, unsafe=False) -> tuple[dict, Path | None]:
    """Evaluate a run's model.keras (or a .keras file) on its data set; write eval.json and confusion.png."""
    from cnntrain import report

    if split not in ("test", "train"):
        raise CnntrainError(f"unknown split {split!r}", hint="the split is 'test' or 'train'")
    model_file, run_dir = resolve_model(target, runs_root)
    model, metadata = runs.load_model(model_file, unsafe=unsafe)
    names = class_names_of(model, metadata)
    data, x, y = _load_data(metadata, data_dir=data_dir, offline=offline, split=split)
    y = _align_labels(y, getattr(data, "class_names", None), names)
    result = evaluate_model(model, metadata, x, y, batch_size=batch_size, top_k=top_k)
    result = {"model": str(model_file), "dataset": metadata.get("dataset"), "split": split,
              "source": str(getattr(data, "source", "") or ""), **result}

    folder, json_path, png_path = output_paths(model_file, run_dir)
    runs.write_json(json_path, result)
    report.confusion_png(result, png_path)
    return result, folder

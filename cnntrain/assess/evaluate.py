"""Evaluate a saved model: loss, accuracy, top-k, per-class figures, the confusion matrix.

One pass of `model.predict` over an ordered, unaugmented pipeline gives the class
probabilities; every figure is computed from them here, so the numbers agree with
Keras' own `model.evaluate` (the loss to float rounding, the accuracy exactly).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnntrain.assess import tta as test_time
from cnntrain.assess.metrics import metrics_from_probabilities
from cnntrain.assess.outputs import probability_model
from cnntrain.errors import CnntrainError
from cnntrain.runs.atomic import write_json
from cnntrain.loading.runners import resolve_and_load
from cnntrain.runs.model_file import check_input_shape, class_names_of

# ---------------------------------------------------------------- the model


def evaluate_model(model, metadata, x, y, *, batch_size=256, top_k=5, tta="none") -> dict:
    """Every figure from one pass of model.predict over float32 batches in order (with a tta, over
    the images' views, each image's probabilities the weighted mean of its views'). Images on disk
    (rows.Lazy) are read a batch (an exported runner: a block) at a time."""
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
    check_input_shape(model, metadata or {}, np.shape(x))   # np.shape: images on disk stay unread
    views = len(test_time.VIEWS[test_time.checked(tta)])
    exported = getattr(model, "exported", False)   # a .tflite / .onnx / SavedModel runner: plain arrays in
    scored = probability_model(model, k_classes)
    if exported:
        probs = test_time.view_outputs(lambda images: model.predict(images, batch_size=int(batch_size)),
                                       x, tta, batch_size)
        logits = None
    else:
        outputs = scored.model.predict(test_time.view_dataset(x, y, tta, batch_size), verbose=0)
        probs, logits = (np.asarray(a) for a in outputs) if scored.logits else (np.asarray(outputs), None)
        probs = test_time.view_major(probs, tta, batch_size)
    note = scored.note
    if views > 1:
        # A mean of softmaxes has no logits: its loss is Keras' from clipped probabilities.
        probs, logits = test_time.mean_of_views(probs, tta), None
    if probs.ndim != 2 or probs.shape != (len(y), k_classes):
        raise CnntrainError(f"the model produced outputs shaped {probs.shape}; expected "
                            f"({len(y)}, {k_classes}) class probabilities")
    # fit's loss is against smoothed labels; evaluate's is the same loss, so the two figures agree.
    smoothing = float((metadata or {}).get("label_smoothing") or 0.0)
    result = {**metrics_from_probabilities(probs, y, names, top_k=top_k, logits=logits, label_smoothing=smoothing),
              "tta": tta}
    if smoothing:
        result["label_smoothing"] = smoothing
    if note:
        result["note"] = note
    return result


# ---------------------------------------------------------------- runs and files

SPLITS = ("test", "train", "validation")
SPLITS_HINT = "the split is 'test', 'train' or 'validation' (the images a run's spec held out)"


def _load_data(metadata: dict, *, data_dir, offline, split, run_dir=None):
    from cnntrain.data import image_options, load_dataset
    from cnntrain.data.lookup import recorded_source

    name = metadata.get("dataset")
    if not name:
        raise CnntrainError("the model file does not say which data set it was trained on",
                            hint="it has no cnntrain metadata (a plain Keras file); evaluate it from "
                                 "Python with evaluate_model, or use a model saved by 'cnntrain fit'")
    path = metadata.get("data_path")
    if path and data_dir and not Path(path).exists():
        # The data moved since training: look in data_dir instead (for a folder of images,
        # a folder of the same name there).
        path = str(Path(data_dir) / Path(path).name) if name == "image_folder" else None
    path = recorded_source(metadata, data_dir) or path
    data = load_dataset(name, path=path, data_dir=data_dir, offline=offline, **image_options(metadata))
    if split == "test":
        if data.x_test is None or data.y_test is None or len(data.x_test) == 0:
            raise CnntrainError(f"the data set has no test split ({data.source})", hint=_without_test(run_dir))
        return data, data.x_test, data.y_test
    if split == "train":
        return data, data.x_train, data.y_train
    raise CnntrainError(f"unknown split {split!r}", hint=SPLITS_HINT)


def _without_test(run_dir: Path | None) -> str:
    """Where to evaluate instead: the images the run held out, not the ones it trained on (whose
    figures only say how well it learned them)."""
    from cnntrain.spec.load import load_spec

    spec = run_dir / "spec.yaml" if run_dir is not None else None
    if spec is not None and spec.is_file() and load_spec(spec)["data"]["validation"] == "split":
        return ("evaluate on the images the run held out with --split validation, or add a test/ folder "
                "(one subfolder per class) beside train/")
    return "add a test/ folder (one subfolder per class) beside train/, or evaluate on the training images " \
           "with --split train (which says how well it learned them, not how well it generalizes)"


def _validation_split(run_dir: Path | None, data, metadata: dict):
    """The images the run's spec held out of `data` for validation (its seed, fraction and limits)."""
    from cnntrain.data.splits import held_out, same_held_out
    from cnntrain.spec.load import load_spec

    if run_dir is None or not (run_dir / "spec.yaml").is_file():
        raise CnntrainError("--split validation needs the run folder: the validation images are the ones its "
                            "spec.yaml held out", hint="evaluate the run folder, not a model file alone")
    spec = load_spec(run_dir / "spec.yaml")
    if spec["data"]["validation"] != "split":
        how = ": it validated on the test split" if spec["data"]["validation"] == "test" else ""
        raise CnntrainError(f"the run held out no validation images (its data.validation is "
                            f"{spec['data']['validation']!r}{how})",
                            file=str(run_dir / "spec.yaml"), hint="evaluate it with --split test")
    splits = held_out(spec, data)
    same_held_out(splits, metadata.get("held_out"), run_dir / "spec.yaml")
    return splits.x_val, splits.y_val


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


def output_paths(model_file: Path, run_dir: Path | None, split: str = "test") -> tuple[Path, Path, Path]:
    """(folder, eval json, confusion png) where the evaluation of `model_file` is written. A training- or
    validation-split evaluation gets its own names: it must not replace the test figures `cnntrain runs` shows."""
    tail = "" if split == "test" else f"-{split}"
    if run_dir is not None:
        return run_dir, run_dir / f"eval{tail}.json", run_dir / f"confusion{tail}.png"
    folder = model_file.parent
    return folder, folder / f"{model_file.stem}.eval{tail}.json", folder / f"{model_file.stem}.confusion{tail}.png"


def evaluate_run(target: str | None, *, runs_root="runs", data_dir=None, offline=False, split="test",
                 top_k=5, batch_size=256, unsafe=False, tta=None) -> tuple[dict, tuple[Path, Path]]:
    """Evaluate a run's model.keras (or a .keras file) on its data set; write eval.json and confusion.png
    (output_paths) and return the figures and the two files written. `tta` None: the model's fit.tta."""
    from cnntrain.figures import confusion

    if split not in SPLITS:
        raise CnntrainError(f"unknown split {split!r}", hint=SPLITS_HINT)
    model, metadata, model_file, run_dir = resolve_and_load(target, runs_root, unsafe=unsafe)  # also .tflite, .onnx
    names = class_names_of(model, metadata)
    data, x, y = _load_data(metadata, data_dir=data_dir, offline=offline,
                            split="train" if split == "validation" else split, run_dir=run_dir)
    if split == "validation":
        x, y = _validation_split(run_dir, data, metadata)
    y = _align_labels(y, getattr(data, "class_names", None), names)
    result = evaluate_model(model, metadata, x, y, batch_size=batch_size, top_k=top_k,
                            tta=test_time.of_model(tta, metadata))
    # The model's epoch tells `cnntrain runs` whether these figures are still its model's after a fit --resume.
    result = {"model": str(model_file), "epoch": metadata.get("epoch"), "dataset": metadata.get("dataset"),
              "split": split,
              "source": str(getattr(data, "source", "") or ""), **result}

    _, json_path, png_path = output_paths(model_file, run_dir, split)
    write_json(json_path, result)
    confusion.confusion_png(result, png_path)
    return result, (json_path, png_path)

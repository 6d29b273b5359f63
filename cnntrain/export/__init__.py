"""Export a trained model as a SavedModel, TFLite (optionally quantized) or ONNX, and check it.

    export_model("runs/mnist/20261125-103000", fmt="tflite", quantize="int8")

writes runs/mnist/20261125-103000/export/tflite-int8/:

    model.tflite     (model.onnx; or saved_model.pb, variables/ ... for a SavedModel)
    cnntrain.json    class names, input shape, normalization, data set (ONNX: also inside the file)
    export.json      the check: agreement, max probability difference, accuracy, size, latency

The exported model takes what model.keras takes: float32 images in the 0-255 range shaped
(batch, height, width, channels), normalization inside, and gives class probabilities.
Nothing here imports TensorFlow until a function runs.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.export.names import DEFAULT_CHECK_IMAGES, EXPORT_JSON, FORMATS, METADATA, QUANTIZE

__all__ = ["export_model", "default_folder", "FORMATS", "QUANTIZE", "DEFAULT_CHECK_IMAGES"]


def default_folder(model_file: Path, fmt: str, quantize: str) -> Path:
    """<folder of the model>/export/<format>[-<quantize>], with the model's name first unless it is model.keras."""
    name = fmt if quantize == "none" else f"{fmt}-{quantize}"
    if model_file.stem != "model":
        name = f"{model_file.stem}-{name}"
    return model_file.parent / "export" / name


def export_model(target=None, *, fmt: str, quantize: str = "none", out=None, runs_root="runs", data_dir=None,
                 offline=False, check_images=None, check_samples=DEFAULT_CHECK_IMAGES, unsafe=False,
                 seed: int = 0, latency_runs: int | None = None) -> dict:
    """Export a run's model.keras (or a .keras file), check it, write export.json; the figures.

    The check runs the exported file and the Keras model on the same images (the test split of
    the model's data set, at most `check_samples` of them, or the files under `check_images`).
    result["passed"] says whether the figures are within check.TOLERANCES; the files are
    written either way, so a failed export can be looked at.
    """
    from cnntrain.export import check, formats
    from cnntrain.loading import runners
    from cnntrain.loading.resolve import resolve
    from cnntrain.runs.atomic import write_json
    from cnntrain.runs.model_file import read_metadata

    formats.check_choice(fmt, quantize)
    model_file = resolve(target, runs_root, keras_for="export").path
    folder = Path(out) if out else default_folder(model_file, fmt, quantize)
    _check_out(folder)
    if not check_images and not read_metadata(model_file).get("dataset"):
        raise CnntrainError("cannot check the export: the model file does not say which data set it was "
                            "trained on", file=str(model_file),
                            hint="give images to check it on with --check-images DIR")
    keras_runner = runners.KerasRunner(model_file, unsafe=unsafe)
    metadata, names, shape = keras_runner.metadata, keras_runner.class_names, keras_runner.image_shape

    if check_images:
        x, y, source = check.folder_images(check_images, shape, class_names=names, limit=check_samples, seed=seed)
    else:
        x, y, source = check.dataset_images(metadata, "test", class_names=names, data_dir=data_dir,
                                            offline=offline, limit=check_samples, seed=seed)
    representative, rep_source = None, None
    if quantize == "int8":
        if metadata.get("dataset"):
            representative, _, rep_source = check.dataset_images(
                metadata, "train", class_names=names, data_dir=data_dir, offline=offline,
                limit=check.REPRESENTATIVE_IMAGES, seed=seed + 1)
        else:
            representative, rep_source = x[:check.REPRESENTATIVE_IMAGES], source

    exported_meta = {**metadata, "class_names": names, "input_shape": list(shape), "format": fmt,
                     "quantize": quantize, "source_model": str(model_file),
                     "input": {"name": formats.INPUT_NAME, "dtype": "float32", "range": [0, 255],
                               "shape": [None, *shape]},
                     "output": "class probabilities, one row per image"}
    file_name = _write(keras_runner.model, fmt, quantize, folder, shape, representative, exported_meta)

    exported = runners.load(resolve(folder if fmt == "savedmodel" else folder / file_name), trusted=True)
    figures = check.compare(keras_runner.predict(x), exported.predict(x), y)
    runs_ = check.LATENCY_RUNS if latency_runs is None else int(latency_runs)
    keras_dtype = check.compute_dtype(keras_runner.model)
    limits = check.tolerance(fmt, quantize, keras_dtype)
    result = {
        "format": fmt, "quantize": quantize, "model": str(model_file), "folder": str(folder),
        "file": str(exported.path), "size_bytes": formats.size_of(exported.path, skip=(METADATA, EXPORT_JSON)),
        "keras_size_bytes": model_file.stat().st_size, "keras_compute_dtype": keras_dtype,
        "check": {"source": source, **figures},
        "latency_ms": {"exported": check.latency_ms(exported, x[0], runs_),
                       "keras": check.latency_ms(keras_runner, x[0], runs_), "runs": runs_,
                       "what": "median wall time of one single-image predict call"},
        "representative": None if representative is None else {"images": int(len(representative)),
                                                                "from": rep_source},
        "tolerance": limits,
    }
    result["failures"] = check.failures(figures, limits)
    result["passed"] = not result["failures"]
    write_json(folder / EXPORT_JSON, result)
    return result


def _check_out(folder: Path) -> None:
    """--out is a new folder, an empty one, or an earlier export (which is replaced)."""
    if folder.exists() and not folder.is_dir():
        raise CnntrainError("--out names a file; the export is a folder", file=str(folder),
                            hint="give a folder to write the export into (it is created)")
    if folder.is_dir() and any(folder.iterdir()) and not any(
            (folder / n).is_file() for n in (METADATA, EXPORT_JSON)):
        raise CnntrainError("--out is a folder that holds other files; refusing to replace it", file=str(folder),
                            hint="give a new or empty folder, or an earlier export folder")


def _write(model, fmt, quantize, folder: Path, shape, representative, metadata) -> str:
    """Export into a temporary folder beside `folder`, then swap it in: an earlier export in
    `folder` is replaced whole, and a failed export leaves it as it was."""
    from cnntrain.export import formats
    from cnntrain.runs.atomic import write_error, write_json

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as exc:
        raise write_error(folder, exc) from None
    try:
        prepared = formats.prepare(model)
        path = formats.write(prepared, fmt, quantize, tmp, shape, representative)
        if fmt == "onnx":
            formats.embed_onnx_metadata(path, metadata)
        write_json(tmp / METADATA, metadata)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(folder, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path.name if path != tmp else ""

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

from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.export.names import DEFAULT_CHECK_IMAGES, EXPORT_JSON, FILE_NAMES, FORMATS, METADATA, QUANTIZE
from cnntrain.export.outdir import INFRA, ExportFolder

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
    from cnntrain.export import formats
    from cnntrain.loading.resolve import resolve
    from cnntrain.runs.model_file import read_metadata

    formats.check_choice(fmt, quantize)
    model_file = resolve(target, runs_root, keras_for="export").path
    if not check_images and not read_metadata(model_file).get("dataset"):
        raise CnntrainError("cannot check the export: the model file does not say which data set it was "
                            "trained on", file=str(model_file),
                            hint="give images to check it on with --check-images DIR")
    with ExportFolder(Path(out) if out else default_folder(model_file, fmt, quantize)) as target_dir:
        target_dir.refuse_clashes(expected_names(fmt))
        result = _export(model_file, target_dir, fmt=fmt, quantize=quantize, data_dir=data_dir, offline=offline,
                         check_images=check_images, check_samples=check_samples, unsafe=unsafe, seed=seed,
                         latency_runs=latency_runs)
        target_dir.publish()
    return result


def expected_names(fmt: str) -> tuple[str, ...]:
    """The names an export of `fmt` writes into its folder, known before it runs (a SavedModel
    adds what Keras puts beside saved_model.pb)."""
    names = (FILE_NAMES[fmt], METADATA, EXPORT_JSON)
    return names + (("variables", "assets", "fingerprint.pb") if fmt == "savedmodel" else ())


def _export(model_file: Path, target_dir: ExportFolder, *, fmt, quantize, data_dir, offline, check_images,
            check_samples, unsafe, seed, latency_runs) -> dict:
    """Write the export into the staging folder and check it there; export.json with the figures."""
    from cnntrain.export import check, formats
    from cnntrain.loading import runners
    from cnntrain.loading.resolve import resolve
    from cnntrain.runs.atomic import write_json

    staging, folder = target_dir.staging, target_dir.path
    keras_runner = runners.KerasRunner(model_file, unsafe=unsafe)
    metadata, names, shape = keras_runner.metadata, keras_runner.class_names, keras_runner.image_shape

    if check_images:
        x, y, source = check.folder_images(check_images, shape, class_names=names, metadata=metadata,
                                            limit=check_samples, seed=seed)
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
    file_name = _write(keras_runner.model, fmt, quantize, staging, shape, representative, exported_meta)

    exported = runners.load(resolve(staging if fmt == "savedmodel" else staging / file_name), trusted=True)
    figures = check.compare(check.predictions(keras_runner, x), check.predictions(exported, x), y)
    runs_ = check.LATENCY_RUNS if latency_runs is None else int(latency_runs)
    keras_dtype = check.compute_dtype(keras_runner.model)
    limits = check.tolerance(fmt, quantize, keras_dtype)
    result = {
        "format": fmt, "quantize": quantize, "model": str(model_file), "folder": str(folder),
        "file": str(folder / file_name) if file_name else str(folder),
        "size_bytes": formats.size_of(exported.path, skip=(METADATA, EXPORT_JSON, *INFRA)),
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
    write_json(staging / EXPORT_JSON, result)
    return result


def _write(model, fmt, quantize, staging: Path, shape, representative, metadata) -> str:
    """The model file (or SavedModel) and cnntrain.json in the staging folder; the file's name."""
    from cnntrain.export import formats
    from cnntrain.runs.atomic import write_error, write_json

    try:
        prepared = formats.prepare(model)
        path = formats.write(prepared, fmt, quantize, staging, shape, representative)
        if fmt == "onnx":
            formats.embed_onnx_metadata(path, metadata)
        write_json(staging / METADATA, metadata)
    except OSError as exc:
        raise write_error(staging, exc) from None
    return path.name if path != staging else ""

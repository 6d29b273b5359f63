"""Which model a RUN or MODEL argument means, for every command alike.

    a run folder, or a run's name under --runs     its model.keras
    nothing                                        the newest finished run's model.keras
    FILE.keras                                     Keras (any other regular file is read as one too)
    FILE.tflite, FILE.onnx                         LiteRT, onnxruntime
    a SavedModel folder (saved_model.pb)           TensorFlow
    an export folder (what `export --out` writes)  the model.tflite / model.onnx / SavedModel in it

Commands that take a model apart (filters, activations, export, fit --init-from) need a Keras
model; `resolve(..., keras_for="filters")` refuses the others with what was given and what is taken.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnntrain.errors import CnntrainError, not_regular
from cnntrain.loading import sidecar
from cnntrain.runs.folder import resolve_run

KERAS, TFLITE, ONNX, SAVED_MODEL = "keras", "tflite", "onnx", "savedmodel"
SUFFIXES = {".keras": KERAS, ".tflite": TFLITE, ".onnx": ONNX}
SAVED_MODEL_FILE = "saved_model.pb"
IN_EXPORT_FOLDER = ("model.tflite", "model.onnx")   # an export folder of ours holds one of these
KIND_NAMES = {KERAS: "a Keras model", TFLITE: "a TFLite model", ONNX: "an ONNX model", SAVED_MODEL: "a SavedModel"}
ACCEPTED = "a run folder, a .keras file, an export folder, a .tflite or .onnx file, or a SavedModel folder"
KERAS_ONLY = "a run folder or a .keras file"


@dataclass(frozen=True)
class ModelRef:
    """A model file found: its path (a folder for a SavedModel), its kind, and its run folder when
    it is a run's model.keras (evaluate writes eval.json there)."""
    path: Path
    kind: str
    run_dir: Path | None = None


def resolve(target: str | None, runs_root="runs", *, keras_for: str | None = None) -> ModelRef:
    """The model `target` means (see the module's table). `keras_for`, a command's name: only a Keras
    model is taken, any other kind is a CnntrainError saying so."""
    ref = _find(target, runs_root)
    if keras_for and ref.kind != KERAS:
        raise CnntrainError(f"is {KIND_NAMES[ref.kind]}; {keras_for} needs a Keras model, given as {KERAS_ONLY}",
                            file=str(ref.path), hint=_keras_hint(ref))
    return ref


def _find(target, runs_root) -> ModelRef:
    if target is None:
        return _run_model(resolve_run(None, runs_root, need_model=True))
    path = Path(target)
    kind = not_regular(path)
    if kind and kind != "a folder":   # zipfile, LiteRT and onnxruntime would block on a FIFO until it is written
        raise CnntrainError(f"is {kind}, not a regular file; a model is read from {ACCEPTED}", file=str(path),
                            hint="give the model file itself, not a pipe or a device")
    if kind is None and (path.suffix.lower() in SUFFIXES or path.is_file()):
        if not path.is_file():
            raise CnntrainError("model file not found", file=str(path))
        if path.suffix.lower() != ".keras":
            sidecar.refuse_unfinished(path)
        return ModelRef(path, SUFFIXES.get(path.suffix.lower(), KERAS))
    if path.is_dir():
        sidecar.refuse_unfinished(path)
        if (path / SAVED_MODEL_FILE).is_file():
            return ModelRef(path, SAVED_MODEL)
        for name in IN_EXPORT_FOLDER:
            if (path / name).is_file():
                return ModelRef(path / name, SUFFIXES[(path / name).suffix])
        if (path / "model.keras").is_file():
            return ModelRef(path / "model.keras", KERAS, path)
    return _run_model(resolve_run(target, runs_root, need_model=True))


def _run_model(run: Path) -> ModelRef:
    model_file = run / "model.keras"
    if not model_file.is_file():
        hint = "the run has not finished; train it to the end with 'cnntrain fit --resume'"
        if (run / "best.keras").is_file():
            hint += f", or give its best model: {run / 'best.keras'}"
        raise CnntrainError("the run folder holds no model.keras", file=str(run), hint=hint)
    return ModelRef(model_file, KERAS, run)


def _keras_hint(ref: ModelRef) -> str:
    """Where the Keras model of an exported one is: export.json beside it names it."""
    from cnntrain.loading.sidecar import source_model

    source = source_model(ref.path)
    if source:
        return f"give the .keras model it was exported from: {source}"
    return "give the run folder or the .keras file the model was exported from"

"""An exported model's metadata, read back through runs/schema.py like every other file:
the cnntrain.json beside the file (inside a SavedModel folder), and for ONNX the same text in the
file's metadata_props, which wins. A model without it still runs; its classes are named 0..N-1.
"""
from __future__ import annotations

import json
from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.runs import schema
from cnntrain.runs.model_file import METADATA, check_described

EXPORT_JSON = "export.json"   # the export's record beside the model: it names the .keras exported
# An export folder's manifest: written first, export.json last, so a folder holding the manifest and no
# export.json holds an export that was killed or failed part way (its files may be a mix of two exports).
MANIFEST = ".cnntrain-export"
ONNX_KEY = "cnntrain"         # the metadata_props entry export writes
HINT = "the exported model's metadata was changed after export; export the model again with 'cnntrain export'"


def folder_of(path) -> Path:
    path = Path(path)
    return path if path.is_dir() else path.parent


def refuse_unfinished(path) -> None:
    """A CnntrainError when `path` (an exported file, or its folder) lies in an export folder whose
    export did not finish: what is there was never published as a whole."""
    folder = folder_of(path)
    if (folder / MANIFEST).is_file() and not (folder / EXPORT_JSON).is_file():
        raise CnntrainError(f"holds no finished export: {EXPORT_JSON}, which an export writes last, is missing (an "
                            "export into this folder was stopped or failed)", file=str(folder),
                            hint=f"export the model into it again: cnntrain export MODEL --out {folder}")


def read_sidecar(path) -> dict:
    """The cnntrain.json beside an exported file (inside a SavedModel folder), checked; {} without."""
    return schema.read_optional(folder_of(path) / METADATA, schema.EXPORTED, HINT) or {}


def onnx_metadata(path, props: dict) -> dict:
    """The sidecar's metadata overlaid with the ONNX file's own (metadata_props["cnntrain"]), checked."""
    metadata = read_sidecar(path)
    text = (props or {}).get(ONNX_KEY)
    if text is None:
        return metadata
    where = f"{path}:metadata_props[{ONNX_KEY}]"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise schema.damaged(where, "", f"the metadata is not JSON ({str(exc)[:200]})", HINT) from None
    return {**metadata, **schema.check(where, value, schema.EXPORTED, HINT)}


def check_against(path, metadata: dict, image_shape, classes: int, onnx_props: bool = False):
    """The metadata must describe the model it is beside: its input shape and its number of outputs
    (predict resizes images to image_size and names the outputs by class_names)."""
    where = f"{path}:metadata_props[{ONNX_KEY}]" if onnx_props else folder_of(path) / METADATA
    check_described(where, metadata, list(image_shape), classes, HINT)


def source_model(path) -> str | None:
    """The .keras file export.json beside an exported model says it was made from, or None."""
    try:
        record = schema.read_optional(folder_of(path) / EXPORT_JSON, schema.EXPORT_RECORD)
    except schema.Damaged:
        return None   # only a hint depends on it
    return record["model"] if record else None

"""The names of the export package, in one module that imports nothing (so the command's --help
and every module of the package can take them without a cycle)."""
from __future__ import annotations

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZE = ("none", "dynamic", "float16", "int8")
FILE_NAMES = {"tflite": "model.tflite", "onnx": "model.onnx", "savedmodel": "saved_model.pb"}
METADATA = "cnntrain.json"     # beside every exported file (inside a SavedModel folder)
EXPORT_JSON = "export.json"    # the check's figures, beside it too
INPUT_NAME = "image"
DEFAULT_CHECK_IMAGES = 10_000

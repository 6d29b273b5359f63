"""Every model file a command is given, found and loaded one way: `resolve` (which model an
argument means: a run, a .keras file, an export folder, a .tflite, an .onnx, a SavedModel),
`runners` (each kind loaded and run alike), `sidecar` (an exported model's metadata, checked),
`probe` (an unknown .tflite tried in a child process first).

Below assess, export, insight and train, so each of them loads models through it and none
through another (assess once imported export for this, and export imports assess).
"""

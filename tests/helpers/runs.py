"""A tiny spec that trains in seconds, and what its finished run folder holds."""

RUN_FILES = {".cnntrain-run", ".lock", "spec.yaml", "env.json", "model.keras", "best.keras", "history.csv", "metrics.json",
             "curves.png"}

TINY_SPEC = """\
name: tiny
seed: 7
data:
  dataset: mnist
  validation_split: 0.2
preprocess:
  normalize: scale
model:
  input_shape: [28, 28, 1]
  layers:
    - Conv2D: {{filters: 4, kernel_size: 3, strides: 2}}
    - Activation: relu
    - MaxPooling2D: {{pool_size: 2}}
    - Flatten
    - Dense: {{units: 10, activation: softmax}}
compile:
  optimizer: {{Adam: {{learning_rate: 0.01}}}}
fit:
  batch_size: 32
  epochs: {epochs}
output:
  dir: {runs}
"""

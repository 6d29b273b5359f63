"""A minimal spec text, a tiny MNIST spec around one first Conv2D, and specs read from text as the
loader reads a file."""
from __future__ import annotations

import textwrap

from cnntrain.spec import spec_from_text

TINY_MODEL = """\
name: tiny
model:
  input_shape: [8, 8, 1]
  layers:
    - Conv2D: {filters: 2, kernel_size: 3}
    - Flatten
    - Dense: {units: 10, activation: softmax}
"""


def spec_of(text, overrides=()):
    """The Spec of a spec file `spec.yaml` holding `text` (dedented), with --set `overrides`."""
    return spec_from_text(textwrap.dedent(text), file="spec.yaml", overrides=overrides)


def first_conv_spec(path, conv: str):
    """Write a one-epoch MNIST spec whose first layer is `Conv2D: {conv}` to `path`; return `path`."""
    path.write_text(f"""\
name: {path.stem}
data: {{dataset: mnist, validation_split: 0.2}}
preprocess: {{normalize: scale}}
model:
  input_shape: [28, 28, 1]
  layers:
    - Conv2D: {{{conv}}}
    - MaxPooling2D: {{pool_size: 4}}
    - Flatten
    - Dense: {{units: 10, activation: softmax}}
fit: {{epochs: 1, batch_size: 32}}
""")
    return path

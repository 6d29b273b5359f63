"""A minimal spec text, and specs read from text as the loader reads a file."""
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

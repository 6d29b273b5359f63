"""The YAML spec: schema (defaults and choices), loading with line marks and --set, validation.

Imports no TensorFlow.
"""
from cnntrain.spec.load import Spec, load_spec, spec_from_text
from cnntrain.spec.schema import DEFAULTS, dotted
from cnntrain.spec.validate import layer_entries, mix_entries

__all__ = ["DEFAULTS", "Spec", "dotted", "layer_entries", "load_spec", "mix_entries", "spec_from_text"]

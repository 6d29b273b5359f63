"""cnntrain: train CNN image classifiers from a YAML spec with Keras 3."""
__version__ = "0.1.0"

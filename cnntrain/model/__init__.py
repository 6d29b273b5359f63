"""The model: spec entries to Keras objects (build), and the normalization front layer."""

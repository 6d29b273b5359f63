"""Training: the fit recipe, its callbacks, devices and tf.distribute strategies."""

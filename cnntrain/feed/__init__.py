"""What feeds the model during fit and evaluate: tf.data pipelines and the fused augmenter."""

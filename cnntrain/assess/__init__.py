"""A trained model at work: figures from predictions (metrics), evaluate, predict."""

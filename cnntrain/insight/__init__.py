"""Looking inside a model: layer arithmetic, filters and feature maps, the augmentation grid."""

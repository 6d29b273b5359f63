"""A tiny learnable image task and a part-trained Keras model for it, shared by the
evaluate and predict tests (both need a real model, neither needs a full cnntrain fit)."""
import numpy as np

from cnntrain.backend import keras

SHAPE = (8, 8, 1)
CLASSES = 10


def synthetic(n: int, seed: int, classes: int = CLASSES):
    """Dark images (0-59) with a bright 2x2 block whose place depends on the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 60, (n, *SHAPE)).astype(np.uint8)
    for i, c in enumerate(y):
        r, col = divmod(int(c), 4)
        x[i, 1 + 2 * r:3 + 2 * r, 2 * col:2 * col + 2, 0] = 230
    return x, y.astype(np.int64)


def metadata(names=None, **extra):
    """The metadata cnntrain stores in model.keras, for this task."""
    meta = {"class_names": names or [str(i) for i in range(CLASSES)], "input_shape": list(SHAPE),
            "normalize": "scale", "background": "dark", "dataset": "mnist", "data_path": None,
            "image_size": None, "color_mode": None, "one_hot": False, "name": "tiny",
            "cnntrain_version": "0.1.0"}
    meta.update(extra)
    return meta


def part_trained(seed: int, metrics=(), classes: int = CLASSES):
    """One epoch of 8 steps: neither perfect nor hopeless, so figures mean something."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(SHAPE),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=list(metrics))
    x, y = synthetic(256, 0, classes)
    model.fit(x.astype("float32"), y, epochs=1, batch_size=32, verbose=0)
    return model

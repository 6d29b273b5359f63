"""Every key a spec may have with its default, and every list of choices: the one place names are listed.

Imports nothing of TensorFlow, so the CLI can check a spec before the 5 s TensorFlow import.
"""
from __future__ import annotations

REQUIRED = object()

# Every key a spec may have, with its default. `model.layers` is the only required one.
DEFAULTS = {
    "name": None,                # default: the spec file's name without .yaml
    "seed": 42,                  # seeds Python, NumPy and TensorFlow
    "data": {
        "dataset": "mnist",      # mnist | fashion_mnist | cifar10 | image_folder
        "path": None,            # a file or folder; default: --data-dir, $CNNTRAIN_DATA_DIR, Keras' cache
        "validation": "split",   # split: hold out validation_split of train | test: the test split | none
        "validation_split": 0.1,  # fraction of the training images, stratified by class
        "image_size": None,      # [height, width] to resize image_folder images to
        "color_mode": None,      # rgb | grayscale for image_folder; default: from the images
        "resize": "stretch",     # stretch | pad | crop: how an image of another aspect ratio meets image_size
        "labels": None,          # a CSV of filename,label[,split] rows (paths relative to it), for image_folder
        "on_broken": "error",    # error: one error naming every unreadable image | skip: train without them
        "cache": "auto",         # auto | disk | memory | none: where decoded image files are kept
        "limit_train": None,     # use N training images, drawn at random (seeded): quick trials
        "limit_test": None,      # use N test images, drawn the same way
    },
    "preprocess": {
        "normalize": "scale",    # none: raw 0-255 | scale: to [0, 1] | standardize: per-channel z-score
    },
    "augment": [],               # keras.layers preprocessing layers, training batches only; MIXES last
    "model": {
        "input_shape": None,     # [height, width, channels]; default: the dataset's shape
        "layers": REQUIRED,      # keras.layers class names with their constructor arguments
    },
    "compile": {
        "optimizer": "adam",     # a name, or {ClassName: {arguments}} from keras.optimizers
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
        "label_smoothing": 0.0,  # > 0 switches to one-hot labels with categorical crossentropy
        "gradient_scale": None,  # {variable name or path: k}: their gradients x k (SGD: k x the learning rate)
    },
    "fit": {
        "batch_size": 128,       # images per step (global, across all replicas)
        "epochs": 10,
        "monitor": "val_accuracy",  # what best.keras, and callbacks without a monitor, watch
        "callbacks": [],         # keras.callbacks class names with arguments, e.g. EarlyStopping
        "class_weight": None,    # balanced (n / (classes x count)) | {class name: weight}: weighs the training loss
        "tensorboard": False,    # write TensorBoard logs to the run folder
        "strategy": "auto",      # auto | one-device | mirrored | multi-worker
        "tracking": "none",      # none | mlflow (pip install 'cnntrain[track]')
        "tracking_uri": None,    # MLflow's tracking URI; default: sqlite:///<output.dir>/mlflow.db
        "tta": "none",           # none | flip | flip_translate | translate: test-time augmentation of fit's final test
                                 # figure and the default of evaluate/predict for this run's model
        "precision": "float32",  # float32 | mixed | auto (fit --mixed-precision: mixed); see PRECISIONS
        "fine_tune": None,       # {at_epoch: N, learning_rate: x, layers: all | K}: backbones frozen until epoch N
    },
    "output": {
        "dir": "runs",           # run folders go to DIR/<name>/<timestamp>/
    },
}

# keras.layers that mix pairs of images AND their labels across a training batch. In `augment:`
# they come after the image layers, take Keras' arguments plus MIX_DEFAULTS' keys, and each batch
# gets at most one of them (timm's switch), so their probabilities sum to at most 1.
MIXES = ("MixUp", "CutMix")
# fit.fine_tune's keys and defaults (at_epoch and learning_rate are required).
FINE_TUNE_DEFAULTS = {"at_epoch": REQUIRED, "learning_rate": REQUIRED, "layers": "all"}
MIX_DEFAULTS = {
    "probability": 1.0,          # the fraction of training batches this mix is applied to
}

DATASETS = ("mnist", "fashion_mnist", "cifar10", "image_folder")
VALIDATION_CHOICES = ("split", "test", "none")
COLOR_MODES = ("rgb", "grayscale")
# Keras' image_dataset_from_directory: stretch (the default), crop_to_aspect_ratio, pad_to_aspect_ratio.
RESIZE_CHOICES = ("stretch", "pad", "crop")
ON_BROKEN_CHOICES = ("error", "skip")
# Images decoded from files are kept in $CNNTRAIN_CACHE_DIR (else ~/.cache/cnntrain) and reused:
# auto holds a split of up to 1 GiB in memory and streams a larger one from the cache file, disk
# always streams, memory always holds; none keeps no cache (every fit decodes, into memory).
CACHES = ("auto", "disk", "memory", "none")
NORMALIZE_CHOICES = ("none", "scale", "standardize")
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
# Choices of command-line options, not spec keys, listed here all the same: one list each.
DEVICES = ("auto", "cpu", "gpu")
INVERT_CHOICES = ("auto", "yes", "no")
TRACKING = ("none", "mlflow")
# flip: the mean of the softmax on the image and on its left-right mirror (airbench's test-time flip).
TTA_CHOICES = ("none", "flip", "flip_translate", "translate")
# mixed: float16 on a GPU, bfloat16 on a CPU, with float32 weights. auto: mixed where the device
# computes it natively and it measured faster (a GPU of compute capability 7.0 or more; a CPU with
# AMX tiles, 1.65x on cifar10_fast, or with AVX512_BF16, 1.30x on a Zen 4), float32 elsewhere.
PRECISIONS = ("float32", "mixed", "auto")
CHOICES = {
    ("data", "dataset"): DATASETS,
    ("data", "validation"): VALIDATION_CHOICES,
    ("data", "color_mode"): COLOR_MODES,
    ("data", "resize"): RESIZE_CHOICES,
    ("data", "on_broken"): ON_BROKEN_CHOICES,
    ("data", "cache"): CACHES,
    ("preprocess", "normalize"): NORMALIZE_CHOICES,
    ("fit", "strategy"): STRATEGIES,
    ("fit", "tracking"): TRACKING,
    ("fit", "tta"): TTA_CHOICES,
    ("fit", "precision"): PRECISIONS,
}

MAX_SEED = 2 ** 32 - 1      # NumPy's seed range, which keras.utils.set_random_seed uses


def dotted(path) -> str:
    """A spec path as written in --set and in messages: ('fit', 'epochs') -> 'fit.epochs'."""
    return ".".join(str(p) for p in path)

"""What is known about each built-in data set: class names, where Keras publishes
it, and the checksums its publishers give (so `verify` can say whether a file is
the published one)."""
from __future__ import annotations

from dataclasses import dataclass, field

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# batches.meta's label_names; also the sorted folder names of the JPEG layout.
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

# Input shapes of the built-in datasets, for building a model before any data is read.
DATASET_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
DATASET_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}
DATASET_TRAIN_IMAGES = {"mnist": 60_000, "fashion_mnist": 60_000, "cifar10": 50_000}
# The published sizes are also the most a file that claims to be the data set may hold: every
# reader checks a claimed count against them before allocating (an IDX header, an npz header,
# a CIFAR batch), so a small file cannot make cnntrain allocate gigabytes.
DATASET_TEST_IMAGES = {"mnist": 10_000, "fashion_mnist": 10_000, "cifar10": 10_000}
CIFAR_BATCH_IMAGES = 10_000            # each python batch: 10,000 rows of 3,072 bytes

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

_KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclass(frozen=True)
class Download:
    fname: str          # name in the cache folder
    origin: str
    file_hash: str | None
    subdir: str         # under $KERAS_HOME, as keras.utils.get_file's cache_subdir


@dataclass(frozen=True)
class Known:
    name: str
    classes: list[str]
    downloads: tuple[Download, ...]
    # basename -> (algorithm, hex digest) as published by Keras or the data's authors
    checksums: dict[str, tuple[str, str]] = field(default_factory=dict)
    how_to_supply: str = ""


_MNIST_SHA = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_CIFAR_SHA = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"

KNOWN: dict[str, Known] = {
    "mnist": Known(
        "mnist", MNIST_CLASSES,
        (Download("mnist.npz", _KERAS_BASE + "mnist.npz", _MNIST_SHA, "datasets"),),
        {
            "mnist.npz": ("sha256", _MNIST_SHA),
            # Yann LeCun's original IDX files (the md5s torchvision and others check).
            "train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train-labels-idx1-ubyte.gz": ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
            "t10k-images-idx3-ubyte.gz": ("md5", "9fb629c4189551a2d022fa330f9573f3"),
            "t10k-labels-idx1-ubyte.gz": ("md5", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        "mnist.npz (Keras' layout) or the four MNIST IDX files",
    ),
    "fashion_mnist": Known(
        "fashion_mnist", FASHION_MNIST_CLASSES,
        # Keras gives no hash for these; neither do we, so a re-hosted copy still loads.
        tuple(Download(n + ".gz", _KERAS_BASE + n + ".gz", None, "datasets/fashion-mnist")
              for n in ("train-labels-idx1-ubyte", "train-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte")),
        {
            # md5s from zalandoresearch/fashion-mnist's README.
            "train-images-idx3-ubyte.gz": ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train-labels-idx1-ubyte.gz": ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
            "t10k-images-idx3-ubyte.gz": ("md5", "bef4ecab320f06d8554ea6380940ec79"),
            "t10k-labels-idx1-ubyte.gz": ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        "a fashion-mnist/ folder of the four Fashion-MNIST IDX files (.gz), "
        "or fashion_mnist.npz",
    ),
    "cifar10": Known(
        "cifar10", CIFAR10_CLASSES,
        (Download("cifar-10-python.tar.gz",
                  "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                  _CIFAR_SHA, "datasets"),),
        {
            "cifar-10-python.tar.gz": ("sha256", _CIFAR_SHA),
            # Keras 3 stores the same download under this name.
            "cifar-10-batches-py-target_archive": ("sha256", _CIFAR_SHA),
        },
        "cifar-10-python.tar.gz, the cifar-10-batches-py/ folder, or "
        "cifar10-jpeg.tar.gz (train/<class>/*.jpg, test/<class>/*.jpg)",
    ),
}

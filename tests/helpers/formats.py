"""Writers of tiny files in the real data formats, for tests/test_data.py."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
from PIL import Image


def mnist_arrays(n_train=6, n_test=4, size=28, seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, size, size), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, size, size), dtype=np.uint8)
    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    y_test = ((np.arange(n_test) + 3) % 10).astype(np.uint8)
    return x_train, y_train, x_test, y_test


def write_npz(path, **arrays):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **arrays)
    return str(path)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The real IDX layout: 0x0000 0x08 ndim, big-endian uint32 dims, the data."""
    if magic is None:
        magic = 0x00000800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_set(folder, x_train, y_train, x_test, y_test, gz=True):
    os.makedirs(folder, exist_ok=True)
    files = {"train-images-idx3-ubyte": x_train, "train-labels-idx1-ubyte": y_train,
             "t10k-images-idx3-ubyte": x_test, "t10k-labels-idx1-ubyte": y_test}
    paths = {}
    for name, arr in files.items():
        data = idx_bytes(arr)
        path = os.path.join(folder, name + (".gz" if gz else ""))
        with open(path, "wb") as f:
            f.write(gzip.compress(data) if gz else data)
        paths[name] = path
    return paths


def cifar_arrays(n_per_batch=2, n_test=3, seed=1):
    """Images (N, 32, 32, 3) and labels for 5 train batches and a test batch."""
    rng = np.random.default_rng(seed)
    n = 5 * n_per_batch
    x_train = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    return x_train, np.arange(n) % 10, x_test, (np.arange(n_test) + 5) % 10


def _batch(x, y, protocol=4) -> bytes:
    # The real layout: rows of 1024 R, 1024 G, 1024 B values (channel-first).
    data = x.transpose(0, 3, 1, 2).reshape(len(x), 3072).copy()
    return pickle.dumps({b"batch_label": b"batch", b"labels": [int(v) for v in y],
                         b"data": data, b"filenames": [b"f.png"] * len(x)}, protocol=protocol)


CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
               b"dog", b"frog", b"horse", b"ship", b"truck"]


def cifar_members(x_train, y_train, x_test, y_test, protocol=4, names=None) -> dict:
    per = len(x_train) // 5
    out = {f"data_batch_{i + 1}": _batch(x_train[i * per:(i + 1) * per],
                                         y_train[i * per:(i + 1) * per], protocol)
           for i in range(5)}
    out["test_batch"] = _batch(x_test, y_test, protocol)
    out["batches.meta"] = pickle.dumps({b"num_cases_per_batch": per, b"num_vis": 3072,
                                        b"label_names": names or CIFAR_NAMES}, protocol=protocol)
    return out


def write_cifar_dir(folder, members: dict):
    os.makedirs(folder, exist_ok=True)
    for name, data in members.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    return str(folder)


def truncate_half(path):
    """Cut a file to its first half, as an interrupted download or copy leaves it."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path


def write_tar(path, members: dict, mode="w:gz"):
    """members: name -> bytes (a file) or None (a folder)."""
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def image_bytes(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def cifar_jpeg_tree(wrapper="cifar10-jpeg") -> dict:
    """CIFAR-10's JPEG layout in little: its ten classes, two training and one test image each
    (archive member name -> bytes)."""
    rng = np.random.default_rng(10)
    return {f"{wrapper}/{split}/{cls.decode()}/{i}.jpg": image_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                                                                     "JPEG")
            for cls in CIFAR_NAMES for split, count in (("train", 2), ("test", 1)) for i in range(count)}


def write_image_tree(root, files: dict):
    """files: relative path -> bytes; returns the root as str."""
    for rel, data in files.items():
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return str(root)


class Payload:
    """Unpickling this runs os.system: what a malicious batch would carry."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def digits(n, seed=0, size=28):
    """n learnable 'digits': class k is a bright bar at row band k on a dark background."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    rng.shuffle(y)
    x = rng.integers(0, 40, size=(n, size, size), dtype=np.uint8)
    band = size // 10
    for i, label in enumerate(y):
        x[i, label * band:(label + 1) * band + 1, 4:size - 4] = 230
    return x, y.astype(np.uint8)


def tiny_mnist(folder):
    """mnist.npz in Keras' layout in `folder`: 200 train, 50 test digits; returns the test images and labels."""
    x_train, y_train = digits(200, seed=1)
    x_test, y_test = digits(50, seed=2)
    np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return x_test, y_test


SHAPES = ("ring", "upright bar", "lying bar", "cross")


def draw_shape(draw, label: int, box, width: int, fill):
    """Shape `label` of SHAPES, drawn with Pillow inside box (left, top, right, bottom)."""
    left, top, right, bottom = box
    mid_x, mid_y = (left + right) // 2, (top + bottom) // 2
    if label == 0:
        draw.ellipse(box, outline=fill, width=width)
    elif label == 1:
        draw.line([(mid_x, top), (mid_x, bottom)], fill=fill, width=width)
    elif label == 2:
        draw.line([(left, mid_y), (right, mid_y)], fill=fill, width=width)
    else:
        draw.line([(mid_x, top), (mid_x, bottom)], fill=fill, width=width)
        draw.line([(left, mid_y), (right, mid_y)], fill=fill, width=width)


def shapes(n, seed=0):
    """n MNIST-like 28x28 images of the SHAPES (labels 0-3): white strokes on black, about 20
    pixels across near the middle, of varied size, place and stroke, so a tiny model learns them."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(SHAPES)
    x = np.zeros((n, 28, 28), np.uint8)
    for i, label in enumerate(y):
        im = Image.new("L", (28, 28), 0)
        half, dx, dy = int(rng.integers(7, 11)), int(rng.integers(-2, 3)), int(rng.integers(-2, 3))
        draw_shape(ImageDraw.Draw(im), int(label), (14 + dx - half, 14 + dy - half, 13 + dx + half, 13 + dy + half),
                   int(rng.integers(2, 4)), 255)
        x[i] = np.asarray(im)
    return x, y.astype(np.uint8)


def picture_size(path) -> tuple[int, int]:
    """(width, height) of a picture a command wrote, its file closed again."""
    with Image.open(path) as picture:
        return picture.size

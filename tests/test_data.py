"""The data set readers, on tiny files written here in each real format."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import formats as fx
from helpers.cli import modules_after, run_cli

from cnntrain.data import DATASETS, Dataset, find_dataset, load_dataset, verify_dataset
from cnntrain.data import lookup
from cnntrain.data.catalog import CIFAR10_CLASSES
from cnntrain.errors import CnntrainError


def load_error(*args, **kwargs) -> CnntrainError:
    kwargs.setdefault("offline", True)
    with pytest.raises(CnntrainError) as info:
        load_dataset(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------- npz

def test_mnist_npz(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    path = fx.write_npz(tmp_path / "d" / "mnist.npz", x_train=x_tr, y_train=y_tr,
                        x_test=x_te, y_test=y_te)
    ds = load_dataset("mnist", data_dir=str(tmp_path / "d"), offline=True)
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (6, 28, 28, 1) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (4, 28, 28, 1)
    assert ds.y_train.dtype == np.int64 and ds.y_train.tolist() == [0, 1, 2, 3, 4, 5]
    assert ds.y_test.tolist() == [3, 4, 5, 6]
    np.testing.assert_array_equal(ds.x_train[..., 0], x_tr)
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.source == path and ds.files == [path]


def test_npz_missing_key(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    path = fx.write_npz(tmp_path / "mnist.npz", y_train=y_tr, x_test=x_te, y_test=y_te)
    e = load_error("mnist", path=path)
    assert e.file == path
    assert e.message == ("key 'x_train' is missing; received keys ['x_test', 'y_test', 'y_train'], "
                         "expected Keras' npz layout: x_train (N, H, W) uint8, y_train (N,), "
                         "x_test, y_test")
    assert "np.savez" in e.hint


def test_npz_labels_out_of_range(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    y_tr[2] = 12
    path = fx.write_npz(tmp_path / "mnist.npz", x_train=x_tr, y_train=y_tr,
                        x_test=x_te, y_test=y_te)
    e = load_error("mnist", path=path)
    assert e.file == path
    assert e.message == ("'y_train' holds label 12 at index 2 (1 labels out of range); "
                         "expected labels in [0, 10) for 10 classes")


def test_npz_wrong_dtype_and_count(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    path = fx.write_npz(tmp_path / "a.npz", x_train=x_tr.astype(np.float32), y_train=y_tr,
                        x_test=x_te, y_test=y_te)
    e = load_error("mnist", path=path)
    assert e.message == "'x_train' has dtype float32; expected uint8 pixels in 0-255"
    path = fx.write_npz(tmp_path / "b.npz", x_train=x_tr, y_train=y_tr[:5],
                        x_test=x_te, y_test=y_te)
    e = load_error("mnist", path=path)
    assert e.message == ("'y_train' holds 5 labels but 'x_train' holds 6 images; "
                         "expected one label per image")


def test_npz_truncated(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    path = fx.write_npz(tmp_path / "mnist.npz", x_train=x_tr, y_train=y_tr,
                        x_test=x_te, y_test=y_te)
    fx.truncate_half(path)
    e = load_error("mnist", path=path)
    assert e.file == path
    assert e.message.startswith("cannot be read as a .npz archive (")
    assert e.message.endswith("the file is truncated, corrupt, or not an npz")


def test_npz_object_array_refused(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    path = str(tmp_path / "mnist.npz")
    np.savez(path, x_train=x_tr, y_train=np.array([object()] * 6, dtype=object),
             x_test=x_te, y_test=y_te)
    e = load_error("mnist", path=path)
    assert e.message.startswith("'y_train' is an object array, which needs pickle")


# ---------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_in_subfolder(tmp_path, gz):
    arrays = fx.mnist_arrays()
    fx.write_idx_set(tmp_path / "mnist", *arrays, gz=gz)
    ds = load_dataset("mnist", data_dir=str(tmp_path), offline=True)
    assert ds.x_train.shape == (6, 28, 28, 1) and ds.x_test.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(ds.x_test[..., 0], arrays[2])
    assert ds.y_test.tolist() == [3, 4, 5, 6] and ds.y_train.dtype == np.int64
    assert ds.source == str(tmp_path / "mnist")
    assert ds.x_train.flags.writeable


def test_fashion_mnist_in_keras_cache(tmp_path):
    arrays = fx.mnist_arrays(n_train=3, n_test=2)
    fx.write_idx_set(tmp_path / "keras" / "datasets" / "fashion-mnist", *arrays)
    ds = load_dataset("fashion_mnist", offline=True)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.x_train.shape == (3, 28, 28, 1) and ds.y_train.tolist() == [0, 1, 2]


def test_idx_wrong_magic(tmp_path):
    paths = fx.write_idx_set(tmp_path, *fx.mnist_arrays(), gz=False)
    # A labels file where the images belong.
    os.replace(paths["train-labels-idx1-ubyte"], paths["train-images-idx3-ubyte"])
    fx.write_idx_set(tmp_path / "x", *fx.mnist_arrays(), gz=False)
    os.replace(tmp_path / "x" / "train-labels-idx1-ubyte", paths["train-labels-idx1-ubyte"])
    e = load_error("mnist", path=str(tmp_path))
    assert e.file == paths["train-images-idx3-ubyte"]
    assert e.message == ("wrong IDX magic number 0x00000801; expected 0x00000803 "
                         "(an IDX image file: unsigned bytes, 3 dimensions)")


def test_idx_fewer_bytes_than_header(tmp_path):
    paths = fx.write_idx_set(tmp_path, *fx.mnist_arrays(), gz=False)
    p = paths["t10k-images-idx3-ubyte"]
    data = Path(p).read_bytes()
    Path(p).write_bytes(data[:-100])
    e = load_error("mnist", path=str(tmp_path))
    assert e.file == p
    assert e.message == ("holds 3036 bytes of data but its header says 4 x 28 x 28 = 3136 bytes; "
                         "the file is truncated")


def test_idx_truncated_gz(tmp_path):
    paths = fx.write_idx_set(tmp_path, *fx.mnist_arrays(), gz=True)
    p = paths["train-images-idx3-ubyte"]
    data = Path(p).read_bytes()
    Path(p).write_bytes(data[: len(data) - 40])
    e = load_error("mnist", path=str(tmp_path))
    assert e.file == p
    assert e.message.startswith("the gzip stream is truncated or corrupt (EOFError: ")


def test_idx_label_count_mismatch(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    paths = fx.write_idx_set(tmp_path, x_tr, y_tr[:4], x_te, y_te, gz=False)
    e = load_error("mnist", path=str(tmp_path))
    assert e.file == paths["train-labels-idx1-ubyte"]
    assert e.message == ("'labels' holds 4 labels but 'train-images-idx3-ubyte' holds 6 images; "
                         "expected one label per image")


# ---------------------------------------------------------------- CIFAR batches

def _check_cifar(ds, x_tr, y_tr, x_te, y_te):
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(ds.x_train, x_tr)  # channel-first rows transposed back
    np.testing.assert_array_equal(ds.x_test, x_te)
    assert ds.y_train.tolist() == list(y_tr) and ds.y_test.tolist() == [5, 6, 7]
    assert ds.y_train.dtype == np.int64
    assert ds.class_names[:3] == ["airplane", "automobile", "bird"]


def test_cifar_batches_folder(tmp_path):
    arrays = fx.cifar_arrays()
    fx.write_cifar_dir(tmp_path / "cifar-10-batches-py", fx.cifar_members(*arrays))
    ds = load_dataset("cifar10", data_dir=str(tmp_path), offline=True)
    _check_cifar(ds, *arrays)
    assert ds.source == str(tmp_path / "cifar-10-batches-py") and len(ds.files) == 7


@pytest.mark.parametrize("protocol", [4, 5])
def test_cifar_python_tar_gz(tmp_path, protocol):
    arrays = fx.cifar_arrays()
    # 5 is Python 3's default, which rebuilds arrays with numpy's _frombuffer.
    members = fx.cifar_members(*arrays, protocol=protocol,
                               names=[n.decode() for n in fx.CIFAR_NAMES])
    archive = {"cifar-10-batches-py": None, "cifar-10-batches-py/readme.html": b"<html>"}
    archive.update({f"cifar-10-batches-py/{k}": v for k, v in members.items()})
    path = fx.write_tar(tmp_path / "cifar-10-python.tar.gz", archive)
    ds = load_dataset("cifar10", data_dir=str(tmp_path), offline=True)
    _check_cifar(ds, *arrays)
    assert ds.source == path


def test_cifar_pickle_payload_refused(tmp_path):
    marker = tmp_path / "pwned"
    members = fx.cifar_members(*fx.cifar_arrays())
    import pickle
    members["data_batch_3"] = pickle.dumps({b"data": fx.Payload(f"touch {marker}"),
                                            b"labels": [0]}, protocol=4)
    folder = fx.write_cifar_dir(tmp_path / "cifar-10-batches-py", members)
    e = load_error("cifar10", data_dir=str(tmp_path))
    assert e.file == os.path.join(folder, "data_batch_3")
    assert e.message == (f"refusing to unpickle global '{os.system.__module__}.system': a CIFAR-10 "
                         "batch holds only numpy arrays, lists and strings, so this file is "
                         "corrupt or malicious (nothing in it was run)")
    assert not marker.exists()
    # Same inside an archive: the error names the archive and the member.
    path = fx.write_tar(tmp_path / "cifar-10-python.tar.gz",
                        {f"cifar-10-batches-py/{k}": v for k, v in members.items()})
    e = load_error("cifar10", path=path)
    assert e.file == path
    assert e.message.startswith("member 'cifar-10-batches-py/data_batch_3': refusing to "
                                "unpickle global")
    assert not marker.exists()


def test_cifar_missing_batch_and_bad_labels(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.cifar_arrays()
    members = fx.cifar_members(x_tr, y_tr, x_te, y_te)
    del members["data_batch_4"]
    folder = fx.write_cifar_dir(tmp_path / "a", members)
    e = load_error("cifar10", path=folder)
    assert e.file == folder
    assert e.message == ("'data_batch_4' is missing; expected data_batch_1 to data_batch_5 and "
                         "test_batch (CIFAR-10's python version)")
    y_te = np.array([1, 10, 2])
    folder = fx.write_cifar_dir(tmp_path / "b", fx.cifar_members(x_tr, y_tr, x_te, y_te))
    e = load_error("cifar10", path=folder)
    assert e.file == os.path.join(folder, "test_batch")
    assert e.message == ("'labels' holds label 10 at index 1 (1 labels out of range); "
                         "expected labels in [0, 10) for 10 classes")


def test_cifar_color_and_size_options(tmp_path):
    arrays = fx.cifar_arrays()
    fx.write_cifar_dir(tmp_path / "cifar-10-batches-py", fx.cifar_members(*arrays))
    ds = load_dataset("cifar10", data_dir=str(tmp_path), offline=True,
                      color_mode="grayscale", image_size=(16, 20))
    assert ds.x_train.shape == (10, 16, 20, 1) and ds.x_test.shape == (3, 16, 20, 1)
    gray = load_dataset("cifar10", data_dir=str(tmp_path), offline=True, color_mode="grayscale")
    # The same luma weights as Pillow's RGB -> L.
    expected = np.asarray(Image.fromarray(arrays[0][0]).convert("L"))
    np.testing.assert_array_equal(gray.x_train[0, ..., 0], expected)


# ---------------------------------------------------------------- image folders

def _pixels(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _rgb_tree(split_layout=True, size=(8, 6)):
    files = {}
    for s, split in enumerate(["train", "test"] if split_layout else [""]):
        for c, cls in enumerate(["dog", "cat"]):
            for i in range(3 - s):
                rel = "/".join(p for p in (split, cls, f"{i}.png") if p)
                files[rel] = fx.image_bytes(_pixels(100 * s + 10 * c + i, size + (3,)), "PNG")
    return files


def test_image_folder_train_test(tmp_path):
    files = _rgb_tree()
    files["train/dog/extra.jpg"] = fx.image_bytes(_pixels(7, (8, 6, 3)), "JPEG")
    files["train/dog/.DS_Store"] = b"junk"
    files["train/cat/._0.png"] = b"AppleDouble, not an image"
    files["train/cat/notes.txt"] = b"ignored"
    root = fx.write_image_tree(tmp_path / "pets", files)
    ds = load_dataset("image_folder", path=root)
    assert ds.class_names == ["cat", "dog"]
    assert ds.x_train.shape == (7, 8, 6, 3) and ds.x_train.dtype == np.uint8
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1, 1] and ds.y_train.dtype == np.int64
    assert ds.x_test.shape == (4, 8, 6, 3) and ds.y_test.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(ds.x_train[0], _pixels(10, (8, 6, 3)))  # train/cat/0.png
    assert ds.source == root


def test_image_folder_flat_grayscale(tmp_path):
    files = {f"{cls}/{i}.png": fx.image_bytes(_pixels(i, (5, 7)), "PNG")
             for cls in ("b", "a", "c") for i in range(2)}
    root = fx.write_image_tree(tmp_path / "g", files)
    ds = load_dataset("image_folder", path=root)
    assert ds.class_names == ["a", "b", "c"] and ds.x_test is None and ds.y_test is None
    assert ds.x_train.shape == (6, 5, 7, 1)
    np.testing.assert_array_equal(ds.x_train[1, ..., 0], _pixels(1, (5, 7)))
    rgb = load_dataset("image_folder", path=root, color_mode="rgb")
    assert rgb.x_train.shape == (6, 5, 7, 3)


def test_image_folder_16bit_png(tmp_path):
    wide = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    files = {f"{c}/x.png": fx.image_bytes(wide, "PNG") for c in ("a", "b")}
    root = fx.write_image_tree(tmp_path / "w", files)
    ds = load_dataset("image_folder", path=root)
    assert ds.x_train.shape == (2, 3, 4, 1)
    np.testing.assert_array_equal(ds.x_train[0, ..., 0], np.rint(wide / 257).astype(np.uint8))


def test_image_folder_every_format(tmp_path):
    rgb = _pixels(5, (6, 4, 3))
    red, blue = np.zeros((6, 4, 3), np.uint8), np.zeros((6, 4, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    buf = __import__("io").BytesIO()
    Image.fromarray(red).save(buf, format="GIF", save_all=True,
                              append_images=[Image.fromarray(blue)])
    files = {"a/x.png": fx.image_bytes(rgb, "PNG"), "a/x.bmp": fx.image_bytes(rgb, "BMP"),
             "a/x.tif": fx.image_bytes(rgb, "TIFF"), "b/x.gif": buf.getvalue(),
             "b/x.webp": fx.image_bytes(rgb, "WEBP"), "b/x.JPEG": fx.image_bytes(rgb, "JPEG"),
             "b/misnamed.jpg": fx.image_bytes(rgb, "PNG")}
    root = fx.write_image_tree(tmp_path / "f", files)
    ds = load_dataset("image_folder", path=root)
    assert ds.x_train.shape == (7, 6, 4, 3) and ds.y_train.tolist() == [0, 0, 0, 1, 1, 1, 1]
    # Sorted: a/x.bmp, a/x.png, a/x.tif, b/misnamed.jpg, b/x.JPEG, b/x.gif, b/x.webp
    for i in (0, 1, 2, 3):  # the lossless ones (misnamed.jpg is a PNG)
        np.testing.assert_array_equal(ds.x_train[i], rgb)
    np.testing.assert_array_equal(ds.x_train[5], red)  # a GIF's first frame


def test_npy_is_not_npz(tmp_path):
    path = str(tmp_path / "mnist.npz")
    with open(path, "wb") as f:
        np.save(f, np.zeros((2, 28, 28), np.uint8))
    e = load_error("mnist", path=path)
    assert e.message.startswith("holds a single .npy array; expected an .npz archive")


def test_image_folder_symlink_cycle(tmp_path):
    root = fx.write_image_tree(tmp_path / "s", _rgb_tree(split_layout=False))
    os.symlink(root, os.path.join(root, "cat", "loop"))
    ds = load_dataset("image_folder", path=root)
    assert ds.x_train.shape == (6, 8, 6, 3)


def test_image_folder_many_files_in_parallel(tmp_path):
    files = {f"{c}/{i:03d}.png": fx.image_bytes(np.full((4, 4, 3), i % 256, np.uint8), "PNG")
             for c in ("a", "b") for i in range(150)}
    root = fx.write_image_tree(tmp_path / "many", files)
    ds = load_dataset("image_folder", path=root)
    assert ds.x_train.shape == (300, 4, 4, 3)
    assert ds.x_train[:, 0, 0, 0].tolist() == list(range(150)) * 2
    # A broken file among many: the pool stops and names it.
    bad = os.path.join(root, "b", "120.png")
    Path(bad).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    e = load_error("image_folder", path=root)
    assert e.file == bad


def test_image_folder_resize(tmp_path):
    files = _rgb_tree(split_layout=False)
    files["cat/big.png"] = fx.image_bytes(_pixels(1, (20, 10, 3)), "PNG")
    root = fx.write_image_tree(tmp_path / "m", files)
    e = load_error("image_folder", path=root)
    assert e.file == os.path.join(root, "cat", "big.png")
    assert e.message == "is 10x20 (width x height), but images are expected to be 6x8 like " \
        f"'{os.path.join(root, 'cat', '0.png')}'"
    assert e.hint == "set data.image_size: [height, width] to resize every image"
    ds = load_dataset("image_folder", path=root, image_size=(4, 5))
    assert ds.x_train.shape == (7, 4, 5, 3)


def test_image_folder_empty_class(tmp_path):
    root = fx.write_image_tree(tmp_path / "e", _rgb_tree())
    os.makedirs(os.path.join(root, "train", "emu"))
    Path(root, "train", "emu", ".DS_Store").write_bytes(b"x")
    e = load_error("image_folder", path=root)
    assert e.file == os.path.join(root, "train", "emu")
    assert e.message == (f"class folder '{e.file}' holds no images; expected files ending in "
                         ".png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp")


def test_image_folder_corrupt_png(tmp_path):
    files = _rgb_tree()
    files["train/dog/1.png"] = files["train/dog/1.png"][:40]
    root = fx.write_image_tree(tmp_path / "c", files)
    e = load_error("image_folder", path=root)
    assert e.file == os.path.join(root, "train", "dog", "1.png")
    assert e.message.startswith("cannot be decoded as an image (")


def test_image_folder_test_class_not_in_train(tmp_path):
    files = _rgb_tree()
    files["test/cow/0.png"] = files["test/cat/0.png"]
    root = fx.write_image_tree(tmp_path / "t", files)
    e = load_error("image_folder", path=root)
    assert e.file == os.path.join(root, "test", "cow")
    assert "has no training counterpart" in e.message


def test_image_folder_needs_path():
    e = load_error("image_folder")
    assert e.message == "image_folder needs a path (or data.labels); received none"


# ---------------------------------------------------------------- archives

def test_image_archive_with_wrapper_folder(tmp_path):
    files = fx.cifar_jpeg_tree()
    files["cifar10-jpeg/train/cat/0.jpg"] = fx.image_bytes(_pixels(3, (32, 32, 3)), "PNG")
    path = fx.write_tar(tmp_path / "cifar10-jpeg.tar.gz", {"cifar10-jpeg": None, **files})
    ds = load_dataset("cifar10", data_dir=str(tmp_path), offline=True)
    assert ds.class_names == CIFAR10_CLASSES and ds.source == path
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (10, 32, 32, 3)
    same = load_dataset("image_folder", path=path)
    np.testing.assert_array_equal(same.x_train, ds.x_train)


def test_archive_corrupt_member(tmp_path):
    files = _rgb_tree()
    files["train/cat/2.png"] = b"not a png"
    path = fx.write_tar(tmp_path / "x.tar", files, mode="w")
    e = load_error("image_folder", path=path)
    assert e.file == path
    assert e.message.startswith("member 'train/cat/2.png': cannot be decoded as an image (")


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "train/../../evil.png"])
def test_archive_refuses_escaping_names(tmp_path, member):
    files = {**_rgb_tree(), member: b"x"}
    path = fx.write_tar(tmp_path / "bad.tar.gz", files)
    e = load_error("image_folder", path=path)
    assert e.file == path
    kind = "an absolute path" if member.startswith("/") else "a path with a '..' component"
    assert e.message == (f"refusing archive member '{member}': it is {kind}; a data archive "
                         "holds only plain files and folders with relative names")


@pytest.mark.parametrize("kind", ["sym", "hard", "fifo"])
def test_archive_refuses_links_and_devices(tmp_path, kind):
    import tarfile
    path = str(tmp_path / "links.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("train/cat/0.png")
        info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                     "fifo": tarfile.FIFOTYPE}[kind]
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    e = load_error("image_folder", path=path)
    assert e.file == path
    what = {"sym": "a symbolic link to '/etc/passwd'", "hard": "a hard link to '/etc/passwd'",
            "fifo": "a device or FIFO"}[kind]
    assert e.message.startswith(f"refusing archive member 'train/cat/0.png': it is {what}")


def test_archive_truncated(tmp_path):
    path = fx.write_tar(tmp_path / "t.tar.gz", _rgb_tree())
    fx.truncate_half(path)
    e = load_error("image_folder", path=path)
    assert e.file == path
    assert e.message.startswith("cannot be read as a tar archive (")
    assert e.message.endswith("the file is truncated or corrupt")


# ---------------------------------------------------------------- lookup

def test_missing_offline_lists_every_path(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    e = load_error("mnist", data_dir=str(data))
    cache = tmp_path / "keras" / "datasets"
    assert e.message == (
        "no mnist data found; looked at:\n"
        f"  {data}/mnist.npz\n"
        f"  {data}/mnist/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]\n"
        f"  {data}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]\n"
        f"  {cache}/mnist.npz\n"
        f"  {cache}/mnist/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]\n"
        "and offline mode is on, so nothing was downloaded")
    assert e.hint == (f"put mnist.npz (Keras' layout) or the four MNIST IDX files in {data}, "
                      "or pass --data-dir DIR (or set CNNTRAIN_DATA_DIR)")


def test_missing_path(tmp_path):
    e = load_error("cifar10", path=str(tmp_path / "nope"))
    assert e.file == str(tmp_path / "nope")
    assert e.message.startswith("data.path does not exist; looked at:\n")


def test_download_failure_and_success(tmp_path, monkeypatch):
    def failing(**kwargs):
        raise Exception("URL fetch failure on https://x: None -- no network")

    monkeypatch.setattr(lookup, "_get_file", failing)
    e = load_error("mnist", offline=False)
    assert "and the download from https://storage.googleapis.com/tensorflow/tf-keras-datasets/" \
           "mnist.npz failed (Exception: URL fetch failure" in e.message
    assert str(tmp_path / "keras" / "datasets" / "mnist.npz") in e.message

    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        target = os.path.join(kwargs["cache_dir"], kwargs["cache_subdir"], kwargs["fname"])
        x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
        return fx.write_npz(target, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)

    monkeypatch.setattr(lookup, "_get_file", fake)
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (6, 28, 28, 1)
    assert calls[0]["file_hash"] == \
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
    # Now in the cache: found there, no second download.
    load_dataset("mnist")
    assert len(calls) == 1


def test_find_dataset_order(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("CNNTRAIN_DATA_DIR", str(tmp_path / "env"))
    fx.write_cifar_dir(tmp_path / "keras" / "datasets" / "cifar-10-batches-py",
                       fx.cifar_members(*fx.cifar_arrays()))
    found = find_dataset("cifar10")
    assert found[0] == (str(tmp_path / "env" / "cifar-10-batches-py" /
                            "data_batch_{1..5}"), False)
    assert [ok for _, ok in found].count(True) == 1
    first_hit = next(p for p, ok in found if ok)
    assert first_hit.startswith(str(tmp_path / "keras" / "datasets" / "cifar-10-batches-py"))
    assert find_dataset("mnist", path=str(tmp_path / "m.npz")) == [(str(tmp_path / "m.npz"), False)]


def test_unknown_dataset():
    e = load_error("cifar_10")
    assert e.message == ("unknown dataset 'cifar_10'; expected one of "
                         "mnist, fashion_mnist, cifar10, image_folder")
    assert e.hint == "did you mean 'cifar10'?"
    assert DATASETS == ("mnist", "fashion_mnist", "cifar10", "image_folder")


def test_verify_reports_checksums(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    path = fx.write_npz(tmp_path / "mnist.npz", x_train=x_tr, y_train=y_tr,
                        x_test=x_te, y_test=y_te)
    report = verify_dataset("mnist", data_dir=str(tmp_path), offline=True)
    import hashlib
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert report["sha256"] == {path: sha}
    assert report["published"][path]["match"] is False
    assert report["published"][path]["expected"].startswith("731c5ac6")
    assert report["train"] == 6 and report["test"] == 4 and report["shape"] == [28, 28, 1]
    assert report["per_class_train"]["0"] == 1 and report["per_class_train"]["9"] == 0
    assert report["classes"] == [str(i) for i in range(10)] and report["name"] == "mnist"


def test_no_tensorflow_import():
    assert modules_after("import cnntrain.data") == []


# ---------------------------------------------------------------- the data set it claims to be

NOT_IT = "check data.dataset and data.path (your own images are dataset: image_folder)"


def test_npz_of_cifar_shaped_images_is_not_mnist(tmp_path):
    x = np.zeros((4, 32, 32, 3), np.uint8)
    path = fx.write_npz(tmp_path / "mnist.npz", x_train=x, y_train=np.arange(4), x_test=x, y_test=np.arange(4))
    e = load_error("mnist", path=path)
    assert (e.file, e.message, e.hint) == (
        path, "'x_train' holds images of 32x32; mnist images are 28x28, so this is not mnist data", NOT_IT)
    x = np.zeros((4, 28, 28, 3), np.uint8)
    fx.write_npz(path, x_train=x, y_train=np.arange(4), x_test=x, y_test=np.arange(4))
    assert load_error("mnist", path=path).message == (
        "holds images of 28x28x3; mnist images are 28x28x1, so this is not mnist data")


def test_idx_header_of_other_images_is_not_fashion_mnist(tmp_path):
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays(size=32)
    paths = fx.write_idx_set(tmp_path / "fashion-mnist", x_tr, y_tr, x_te, y_te)
    e = load_error("fashion_mnist", path=str(tmp_path / "fashion-mnist"))
    assert (e.file, e.message) == (paths["train-images-idx3-ubyte"], "its header claims images of 32x32; "
                                   "fashion_mnist images are 28x28, so this is not fashion_mnist data")


def test_cifar_python_archive_is_not_mnist(tmp_path):
    path = fx.write_tar(tmp_path / "cifar-10-python.tar.gz",
                        {f"cifar-10-batches-py/{k}": v for k, v in fx.cifar_members(*fx.cifar_arrays()).items()})
    assert load_error("mnist", path=path).message == "holds no images; expected train/<class>/<image> members"


def test_cifar10_needs_its_ten_classes(tmp_path):
    root = fx.write_image_tree(tmp_path / "cifar10", {k: v for k, v in _rgb_tree(size=(32, 32)).items()})
    e = load_error("cifar10", path=root)
    assert (e.file, e.message, e.hint) == (root, "holds 2 classes; cifar10 has 10, so this is not cifar10 data",
                                           NOT_IT)
    members = fx.cifar_members(*fx.cifar_arrays(), names=[b"cat", b"dog", b"bird"])
    folder = fx.write_cifar_dir(tmp_path / "cifar-10-batches-py", members)
    e = load_error("cifar10", path=folder)
    assert (e.file, e.message) == (os.path.join(folder, "batches.meta"),
                                   "holds 3 classes; cifar10 has 10, so this is not cifar10 data")


def test_a_data_dir_that_does_not_exist_is_its_own_error(tmp_path, monkeypatch):
    # The data sits in Keras' cache, where the lookup would find it if it looked past the typo.
    x_tr, y_tr, x_te, y_te = fx.mnist_arrays()
    fx.write_npz(tmp_path / "keras" / "datasets" / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    missing = tmp_path / "dta"
    hint = ("  hint: name the folder that holds the dataset files, or leave --data-dir out to use Keras' cache "
            "and its download\n")
    result = run_cli("data", "verify", "mnist", "--data-dir", missing)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"{missing}: the data folder (--data-dir or $CNNTRAIN_DATA_DIR) does not exist\n{hint}"
    monkeypatch.setenv("CNNTRAIN_DATA_DIR", str(missing))
    result = run_cli("data", "list")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"{missing}: the data folder (--data-dir or $CNNTRAIN_DATA_DIR) does not exist\n{hint}"

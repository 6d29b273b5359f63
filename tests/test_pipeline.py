"""The input pipeline: split, normalization, tf.data batches, fused augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from cnntrain.feed import augment as aug
from cnntrain.model import normalization
from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError
from cnntrain.feed.pipeline import eval_dataset, train_dataset
from cnntrain.model.normalization import normalization_layer
from cnntrain.data.splits import split_validation


def _images(n=8, h=6, w=6, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _scene(h=16, w=16):
    """A structured image (gradient, a bright block, a dark stripe): rotating it
    changes pixels by amounts that depend on the angle, unlike pure noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255.0 / (w - 1), yy * 255.0 / (h - 1), (xx + yy) * 127.0 / (h + w)], -1)
    img[2:6, 3:12] = 250.0
    img[10:12, :] = 5.0
    return img.astype(np.float32)


def _epoch(ds):
    xs, ys = zip(*[(a.numpy(), b.numpy()) for a, b in ds])
    return xs, ys


# --- split_validation ----------------------------------------------------------------

def test_split_is_stratified_exactly():
    y = np.array([0] * 10 + [1] * 5 + [2] * 1)
    x = np.arange(len(y))  # ids stand in for images
    x_tr, y_tr, x_val, y_val = split_validation(x, y, 0.2, seed=3)
    # floor(0.2*16 + .5) = 3 held out: 2 of class 0, 1 of class 1, none of the singleton.
    assert np.bincount(y_val, minlength=3).tolist() == [2, 1, 0]
    assert np.bincount(y_tr, minlength=3).tolist() == [8, 4, 1]
    assert sorted(np.concatenate([x_tr, x_val]).tolist()) == list(range(16))
    assert np.array_equal(y[x_tr], y_tr) and np.array_equal(y[x_val], y_val)


def test_split_largest_remainder_and_min_one_train():
    y = np.repeat([0, 1, 2], 5)
    _, y_tr, _, y_val = split_validation(np.arange(15), y, 0.1, seed=0)
    # 1.5 -> 2 held out; equal remainders go to the lower classes.
    assert np.bincount(y_val, minlength=3).tolist() == [1, 1, 0]
    _, y_tr, _, y_val = split_validation(np.arange(4), np.array([0, 0, 1, 1]), 0.9, seed=0)
    assert np.bincount(y_tr).tolist() == [1, 1]


def test_split_is_deterministic_for_a_seed():
    y = np.repeat(np.arange(4), 25)
    x = _images(100, 2, 2, 1)
    a = split_validation(x, y, 0.3, seed=7)
    b = split_validation(x, y, 0.3, seed=7)
    c = split_validation(x, y, 0.3, seed=8)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[2], c[2])
    assert len(a[2]) == 30 and a[0].shape == (70, 2, 2, 1)


def test_split_accepts_column_labels_and_rejects_bad_fractions():
    y = np.repeat([0, 1], 10)[:, None]  # CIFAR-style (N, 1)
    _, y_tr, _, y_val = split_validation(np.arange(20), y, 0.5, seed=0)
    assert y_val.shape == (10, 1) and y_tr.shape == (10, 1)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(CnntrainError, match=rf"^validation fraction must be between 0 and 1 \(exclusive\), got {bad}\n"):
            split_validation(np.arange(20), y, bad, seed=0)
    with pytest.raises(CnntrainError, match="no validation"):
        split_validation(np.arange(3), np.array([0, 1, 2]), 0.1, seed=0)


# --- normalization -------------------------------------------------------------------

def test_normalization_choices():
    assert normalization_layer("none", _images()) is None
    scale = normalization_layer("scale", _images())
    assert isinstance(scale, keras.layers.Rescaling) and scale.name == "scale"
    np.testing.assert_allclose(scale(np.full((1, 2, 2, 1), 255.0, np.float32)).numpy(), 1.0, rtol=1e-6)
    with pytest.raises(CnntrainError, match=r"^unknown normalization 'minmax'\n  hint: preprocess.normalize is one of none, scale, standardize$"):
        normalization_layer("minmax", _images())


def test_standardize_uses_training_stats_in_chunks(monkeypatch):
    monkeypatch.setattr(normalization, "_STATS_CHUNK_BYTES", 1)  # one image per chunk
    x_train, x_test = _images(7, seed=1), _images(5, seed=2) // 2
    mean, var = normalization.channel_stats(x_train)
    ref = x_train.astype(np.float64)
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(var, ref.var(axis=(0, 1, 2)), rtol=1e-12)
    assert not np.allclose(mean, x_test.mean(axis=(0, 1, 2)))
    floats = x_train.astype(np.float64) / 7 + 1000  # the float path: two passes
    f_mean, f_var = normalization.channel_stats(floats)
    np.testing.assert_allclose(f_mean, floats.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(f_var, floats.var(axis=(0, 1, 2)), rtol=1e-9)

    layer = normalization_layer("standardize", x_train)
    assert isinstance(layer, keras.layers.Normalization) and layer.name == "standardize"
    out = layer(x_test.astype(np.float32)).numpy()
    np.testing.assert_allclose(out, (x_test - mean) / np.sqrt(var), rtol=1e-4, atol=1e-4)
    # Built eagerly: usable inside one graph after another (two tf.data maps).
    layer = normalization_layer("standardize", x_train)
    for _ in range(2):
        ds = tf.data.Dataset.from_tensors(x_test.astype(np.float32)).map(layer)
        np.testing.assert_allclose(next(iter(ds)).numpy(), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["standardize", "scale"])
def test_normalization_survives_save_and_load(tmp_path, kind):
    x_train = _images(6, 4, 4, 3, seed=3)
    model = keras.Sequential([keras.Input((4, 4, 3)), normalization_layer(kind, x_train),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    probe = _images(3, 4, 4, 3, seed=4).astype(np.float32)
    before = model.predict(probe, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].name == kind
    np.testing.assert_allclose(loaded.predict(probe, verbose=0), before, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.layers[0](probe).numpy(), model.layers[0](probe).numpy(), rtol=1e-6)


# --- tf.data -------------------------------------------------------------------------

def test_train_dataset_batches_dtypes_and_partial_batch():
    x, y = _images(10), np.arange(10) % 3
    ds = train_dataset(x, y, batch_size=4, augment=[], seed=0)
    xs, ys = _epoch(ds)
    assert [len(b) for b in ys] == [4, 4, 2]
    assert xs[0].dtype == np.float32 and xs[0].shape == (4, 6, 6, 3)
    assert np.issubdtype(ys[0].dtype, np.integer)
    assert ds.element_spec[0].shape.as_list() == [None, 6, 6, 3]
    # No normalization, no augmentation: exactly the input pixels, each once.
    images = np.concatenate(xs)
    assert images.max() > 200
    assert sorted(map(bytes, images.astype(np.uint8))) == sorted(map(bytes, x))


def test_train_dataset_one_hot():
    x, y = _images(5), np.array([0, 2, 1, 2, 0])
    xs, ys = _epoch(train_dataset(x, y, batch_size=5, augment=[], seed=0, num_classes=3))
    assert ys[0].dtype == np.float32 and ys[0].shape == (5, 3)
    # Labels travel with their images.
    ids = {bytes(img): lab for img, lab in zip(x, y)}
    assert all(ids[bytes(img.astype(np.uint8))] == onehot.argmax()
               for img, onehot in zip(xs[0], ys[0]))
    np.testing.assert_array_equal(ys[0].sum(axis=1), 1.0)


def test_train_dataset_shuffles_each_epoch_reproducibly():
    x, y = _images(32, 2, 2, 1), np.arange(32)
    ds = train_dataset(x, y, batch_size=8, augment=[], seed=5, epochs=2)
    labels = np.concatenate(_epoch(ds)[1])
    first, second = labels[:32], labels[32:]
    assert sorted(first) == sorted(second) == list(range(32)) and not np.array_equal(first, second)
    again = np.concatenate(_epoch(train_dataset(x, y, batch_size=8, augment=[], seed=5))[1])
    assert np.array_equal(first, again)


def test_an_epoch_depends_on_the_seed_and_its_number_alone():
    """What a resumed fit relies on: epoch 2 started on its own is epoch 2 of a longer stream,
    order and augmentation, bit for bit."""
    x, y = _images(12, 8, 8, 3), np.arange(12)
    whole = _epoch(train_dataset(x, y, batch_size=5, augment=_chapter_layers(), seed=3, epochs=3))
    alone = _epoch(train_dataset(x, y, batch_size=5, augment=_chapter_layers(), seed=3, first_epoch=2))
    endless = train_dataset(x, y, batch_size=5, augment=_chapter_layers(), seed=3, first_epoch=2, epochs=None)
    assert [len(b) for b in whole[1]] == [5, 5, 2] * 3
    for images, labels in (alone, _epoch(endless.take(3))):
        assert all(np.array_equal(a, b) for a, b in zip(images + labels, whole[0][6:] + whole[1][6:]))
    assert not np.array_equal(np.concatenate(whole[1][:3]), np.concatenate(whole[1][6:]))


def test_eval_dataset_in_order_without_augmentation():
    x, y = _images(5), np.arange(5)
    xs, ys = _epoch(eval_dataset(x, y, batch_size=2, num_classes=5))
    np.testing.assert_array_equal(np.concatenate(xs), x.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate(ys), np.eye(5, dtype=np.float32))


def test_arguments_checked():
    with pytest.raises(CnntrainError, match=r"^batch_size must be at least 1, got 0$"):
        train_dataset(_images(), np.zeros(8, int), batch_size=0, augment=[], seed=0)
    with pytest.raises(CnntrainError, match="outside 0..2"):
        eval_dataset(_images(), np.arange(8), batch_size=2, num_classes=3)
    with pytest.raises(CnntrainError, match=r"^expected 8 integer labels, got an array shaped \(7,\)$"):
        train_dataset(_images(), np.zeros(7, int), batch_size=2, augment=[], seed=0)


# --- augmentation --------------------------------------------------------------------

def _chapter_layers():
    return [keras.layers.RandomRotation(0.25), keras.layers.RandomTranslation(0.1, 0.1),
            keras.layers.RandomFlip("horizontal"), keras.layers.RandomContrast(0.3)]


def test_augmented_batches_reproducible_and_changing():
    x, y = _images(12, 8, 8, 3), np.arange(12)
    ds = train_dataset(x, y, batch_size=5, augment=_chapter_layers(), seed=11)
    xs, ys = _epoch(ds)
    assert [b.shape for b in xs] == [(5, 8, 8, 3), (5, 8, 8, 3), (2, 8, 8, 3)]
    assert xs[0].dtype == np.float32
    order = np.concatenate(ys)
    augmented = np.concatenate(xs)
    assert np.abs(augmented - x[order]).mean() > 10  # pixels changed

    # Same seed, fresh pipeline (fresh Keras layers too): the same epoch, bit for bit,
    # RandomContrast included although it is not fused.
    xs2, ys2 = _epoch(train_dataset(x, y, batch_size=5, augment=_chapter_layers(), seed=11))
    assert all(np.array_equal(a, b) for a, b in zip(xs + ys, xs2 + ys2))
    # The next epoch draws new transforms, not only a new order.
    xs3, ys3 = _epoch(train_dataset(x, y, batch_size=5, augment=_chapter_layers(), seed=11, first_epoch=1))
    again = np.concatenate(xs3)[np.argsort(np.concatenate(ys3))]
    assert not np.allclose(again, augmented[np.argsort(order)])


def test_plan_fuses_runs_and_respects_sampling_boundaries():
    L = keras.layers
    steps = aug.plan([L.RandomFlip("horizontal"), L.RandomRotation(0.1), L.RandomTranslation(0.1, 0.1),
                      L.RandomZoom(0.1, fill_mode="constant"), L.RandomFlip("vertical"),
                      L.RandomContrast(0.2), L.RandomShear(0.1, 0.1), L.RandomCrop(4, 4)])
    kinds = [[type(layer).__name__ for layer in s.layers] if isinstance(s, aug._FusedGeometry)
             else repr(s) for s in steps]
    assert kinds == [["RandomFlip", "RandomRotation", "RandomTranslation"],
                     ["RandomZoom", "RandomFlip"], "RandomContrast", ["RandomShear"], "RandomCrop"]
    assert steps[1].fill_mode == "constant" and steps[0].fill_mode == "reflect"


def test_fused_horizontal_flip_is_exact():
    img = _scene(5, 7)
    batch = np.repeat(img[None], 32, axis=0)
    out = aug.build_augmenter([keras.layers.RandomFlip("horizontal")], seed=0)(batch).numpy()
    flipped = [np.array_equal(o, img[:, ::-1]) for o in out]
    same = [np.array_equal(o, img) for o in out]
    assert all(f or s for f, s in zip(flipped, same))
    assert 0 < sum(flipped) < 32


@pytest.mark.parametrize("fuse", ["1", "0"])
@pytest.mark.parametrize("factor,k", [((0.25, 0.25), 1), ((-0.25, -0.25), -1)])
def test_exact_rotation_matches_rot90(monkeypatch, fuse, factor, k):
    monkeypatch.setenv("CNNTRAIN_FUSE_AUGMENT", fuse)
    img = np.arange(5 * 5 * 2, dtype=np.float32).reshape(5, 5, 2)
    layer = keras.layers.RandomRotation(factor, seed=1)
    out = aug.build_augmenter([layer], seed=0)(img[None]).numpy()[0]
    # Keras: a positive factor turns the picture counter-clockwise, as np.rot90 does.
    np.testing.assert_allclose(out, np.rot90(img, k=k, axes=(0, 1)), atol=1e-3)


def test_fused_composition_matches_keras_chain():
    # Integer-pixel moves sampled "nearest" with a constant fill: chaining and fusing
    # must agree exactly, which pins the order the matrices are composed in
    # (translation and rotation do not commute). Zoom-out first, so nothing the
    # chain fills in an intermediate step comes back into view.
    img = _scene(9, 9)[None]
    L = keras.layers
    kw = dict(fill_mode="constant", interpolation="nearest", fill_value=1.0)
    layers = [L.RandomZoom((1.0, 1.0), **kw),
              L.RandomTranslation((2 / 9, 2 / 9), (-1 / 9, -1 / 9), **kw),
              L.RandomRotation((0.25, 0.25), **kw)]
    fused = aug.build_augmenter(layers, seed=0)
    assert len(fused.steps) == 1
    chained = img
    for layer in layers:
        chained = layer(chained, training=True)
    assert (chained.numpy() == 1.0).mean() > 0.3  # fill reached
    np.testing.assert_allclose(fused(img).numpy(), chained.numpy(), atol=1e-3)
    swapped = aug.build_augmenter(layers[::-1], seed=0)(img).numpy()
    assert not np.allclose(swapped, chained.numpy(), atol=1e-3)


def test_rotation_statistics_match_keras():
    batch = np.repeat(_scene()[None], 256, axis=0)
    fused = aug.build_augmenter([keras.layers.RandomRotation(0.25)], seed=0)(batch).numpy()
    chained = keras.layers.RandomRotation(0.25, seed=0)(batch, training=True).numpy()
    change_fused = np.abs(fused - batch).mean()
    change_keras = np.abs(chained - batch).mean()
    assert change_fused > 5
    assert abs(change_fused - change_keras) < 0.15 * change_keras
    # Same spread of outcomes per image, too.
    spread_f = np.abs(fused - batch).mean(axis=(1, 2, 3)).std()
    spread_k = np.abs(chained - batch).mean(axis=(1, 2, 3)).std()
    assert abs(spread_f - spread_k) < 0.3 * spread_k


def test_escape_hatch_chains_keras_layers(monkeypatch):
    monkeypatch.setenv("CNNTRAIN_FUSE_AUGMENT", "0")
    augment = aug.build_augmenter(_chapter_layers(), seed=0)
    assert [repr(s) for s in augment.steps] == ["RandomRotation", "RandomTranslation",
                                                "RandomFlip", "RandomContrast"]
    x, y = _images(6, 8, 8, 3), np.arange(6)
    xs, _ = _epoch(train_dataset(x, y, batch_size=6, augment=_chapter_layers(), seed=0))
    assert xs[0].shape == (6, 8, 8, 3) and np.abs(xs[0] - x.astype(np.float32)).mean() > 10


def test_size_changing_layer_and_unseeded_calls():
    augment = aug.build_augmenter([keras.layers.RandomRotation(0.1), keras.layers.RandomCrop(4, 5)], seed=2)
    batch = tf.constant(_images(3, 8, 8, 3), tf.float32)
    a, b = augment(batch).numpy(), augment(batch).numpy()
    assert a.shape == (3, 4, 5, 3) and not np.array_equal(a, b)
    xs, _ = _epoch(train_dataset(_images(3, 8, 8, 3), np.arange(3), batch_size=2, seed=0,
                                 augment=[keras.layers.RandomCrop(4, 5)]))
    assert [t.shape for t in xs] == [(2, 4, 5, 3), (1, 4, 5, 3)]

"""MixUp and CutMix in augment: exact labels, the per-batch switch, seeds and resume, spec errors, a real fit."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError, SpecError
from cnntrain.feed import mix
from cnntrain.feed.pipeline import train_dataset
from cnntrain.model import build
from helpers.cli import run_cli
from helpers.specs import TINY_MODEL, spec_of

VALUES = np.arange(10) * 20.0 + 10.0   # image k is all VALUES[k] and of class k: its label is readable in its pixels


def _constant_images(n=10, size=12):
    return np.broadcast_to(VALUES[:n, None, None, None], (n, size, size, 1)).astype(np.uint8).copy()


def _batches(augment, *, n=10, batch=5, seed=3, epochs=4, **kwargs):
    ds = train_dataset(_constant_images(n), np.arange(n), batch_size=batch, augment=augment, seed=seed,
                       num_classes=10, epochs=epochs, **kwargs)
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_mixup_labels_are_the_share_of_each_image():
    mixed_rows = 0
    for images, labels in _batches([(keras.layers.MixUp(alpha=0.4), 1.0)]):
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
        assert ((labels > 0).sum(axis=1) <= 2).all()
        # Every pixel is the labels' blend of the two images' values: the label share IS lambda.
        np.testing.assert_allclose(images[..., 0], np.broadcast_to((labels @ VALUES)[:, None, None], images.shape[:3]),
                                   atol=1e-3)
        mixed_rows += int(((labels > 0).sum(axis=1) == 2).sum())
    assert mixed_rows >= 20   # of 40 rows: only an image paired with itself stays whole


def test_cutmix_labels_are_the_share_of_pasted_pixels():
    boxes = 0
    for images, labels in _batches([keras.layers.RandomFlip("horizontal"), keras.layers.CutMix(factor=1.0)]):
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
        for image, label in zip(images[..., 0], labels):
            for k in np.flatnonzero(label):
                # Exact: the share of pixels that came from image k, not Keras' real-valued box area.
                assert label[k] == pytest.approx(np.mean(image == VALUES[k]), abs=1e-6)
            assert set(np.unique(image)) <= set(VALUES[np.flatnonzero(label)])
            if np.count_nonzero(label) == 2:
                assert any(_is_a_box(image == VALUES[k]) for k in np.flatnonzero(label))   # the pasted part
                boxes += 1
    assert boxes >= 10


def _is_a_box(mask) -> bool:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return bool(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()) and mask.sum() < mask.size


def test_probability_zero_leaves_the_batches_as_without_the_mix():
    flip = [keras.layers.RandomFlip("horizontal")]
    plain = _batches(flip)
    for mixes in ([(keras.layers.MixUp(), 0.0)], [(keras.layers.MixUp(), 0.0), (keras.layers.CutMix(), 0.0)]):
        got = _batches(flip + mixes)
        assert all(np.array_equal(a, b) and np.array_equal(c, d) for (a, c), (b, d) in zip(plain, got))
    assert all(np.array_equal(y, np.eye(10)[np.argmax(y, axis=1)]) for _, y in plain)


def test_each_batch_gets_at_most_one_mix_with_its_probability():
    seeds = [tf.constant([7, i], tf.int64) for i in range(2000)]
    picks = np.array([int(mix.choice([0.3, 0.5], seed)) for seed in seeds])
    counts = np.bincount(picks, minlength=3) / len(picks)
    assert counts == pytest.approx([0.3, 0.5, 0.2], abs=0.04)
    assert {int(mix.choice([1.0], seed)) for seed in seeds[:50]} == {0}
    assert {int(mix.choice([0.0], seed)) for seed in seeds[:50]} == {1}
    # Through the pipeline: a batch is mixed on half of the batches (a permutation of 10 images
    # that leaves every image with itself is too rare to count).
    batches = _batches([(keras.layers.MixUp(alpha=1.0), 0.5)], batch=10, epochs=200)
    mixed = np.mean([not np.array_equal(y, np.eye(10)[np.argmax(y, axis=1)]) for _, y in batches])
    assert 0.38 < mixed < 0.62


def test_same_seed_same_batches_and_a_resumed_epoch_is_the_same():
    layers = lambda: [keras.layers.RandomTranslation(0.1, 0.1), (keras.layers.MixUp(), 0.5),  # noqa: E731
                      (keras.layers.CutMix(), 0.5)]
    x, y = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8), np.arange(12) % 10
    run = lambda **kw: [(a.numpy(), b.numpy()) for a, b in train_dataset(  # noqa: E731
        x, y, batch_size=5, augment=layers(), seed=4, num_classes=10, **kw)]
    whole, again = run(epochs=3), run(epochs=3)
    alone = run(first_epoch=2)
    assert all(np.array_equal(a, b) for pair in zip(whole, again) for a, b in zip(*pair))
    assert all(np.array_equal(a, b) for pair in zip(whole[6:], alone) for a, b in zip(*pair))
    assert not np.array_equal(whole[0][1], whole[3][1])


def test_mixes_need_one_hot_labels():
    with pytest.raises(CnntrainError) as info:
        train_dataset(_constant_images(), np.arange(10), batch_size=5, augment=[keras.layers.MixUp()], seed=0)
    assert str(info.value) == ("MixUp mixes the labels, which needs one-hot labels\n"
                               "  hint: pass num_classes (build.uses_one_hot says so for a spec with a mix)")


# --- the spec ------------------------------------------------------------------------

def _error(augment):
    with pytest.raises(SpecError) as info:
        spec_of(TINY_MODEL + "augment:\n" + augment)
    return str(info.value)


def test_spec_errors_at_their_line():
    assert _error("  - MixUp: {alpha: 0.2, probability: 1.5}\n") == (
        "spec.yaml:9:38: MixUp's probability must be a number in [0, 1], received: 1.5 (float)\n"
        "  hint: the fraction of training batches mixed, e.g. probability: 0.5")
    assert _error("  - MixUp: {probability: '0.5'}\n").startswith(
        "spec.yaml:9:26: MixUp's probability must be a number in [0, 1], received: '0.5' (str)\n")
    assert _error("  - MixUp\n  - CutMix\n") == (
        "spec.yaml:10:5: the mixes' probabilities sum to 2 (MixUp 1 + CutMix 1); each batch gets at most one mix, "
        "so they must sum to at most 1\n"
        "  hint: give each a probability, e.g. probability: 0.5 on both (a mix without one has 1.0)")
    assert _error("  - MixUp: {probability: 0.6}\n  - CutMix: {factor: 0.5, probability: 0.5}\n").startswith(
        "spec.yaml:10:40: the mixes' probabilities sum to 1.1 (MixUp 0.6 + CutMix 0.5); ")
    assert _error("  - CutMix\n  - RandomFlip\n  - RandomContrast: 0.2\n") == (
        "spec.yaml:9:5: CutMix is listed before RandomFlip, but it mixes whole batches after the image augmentations\n"
        "  hint: move CutMix below RandomContrast, to the end of augment:")


def test_a_mix_switches_to_one_hot_labels_and_categorical_crossentropy():
    plain = spec_of(TINY_MODEL)
    mixed = spec_of(TINY_MODEL + "augment:\n  - MixUp: {alpha: 0.2, probability: 0.5}\n")
    assert not build.uses_one_hot(plain) and build.uses_one_hot(mixed)
    loss = build.build_loss(mixed)
    assert type(loss) is keras.losses.CategoricalCrossentropy and loss.label_smoothing == 0
    layers = build.build_layers(mixed, ("augment",))
    assert [(type(layer).__name__, layer.alpha, p) for layer, p in layers] == [("MixUp", 0.2, 0.5)]
    smoothed = spec_of(TINY_MODEL + "augment: [CutMix]\ncompile: {label_smoothing: 0.1}\n")
    assert build.build_loss(smoothed).label_smoothing == pytest.approx(0.1)


# --- through the command line --------------------------------------------------------

def test_check_tries_each_mix(tiny_spec):
    result = run_cli("check", tiny_spec(), "--set", "augment=[{MixUp: {alpha: -1, probability: 0.1}}]")
    assert result.exit_code == 1
    assert result.stderr == ("--set augment=[{MixUp: {alpha: -1, probability: 0.1}}]: MixUp gives labels that are "
                             "not numbers: [nan, nan, nan, nan, nan, nan, nan, nan, nan, nan]\n"
                             "  hint: see the documentation of keras.layers.MixUp (MixUp's alpha: a number above 0)\n")


def test_a_tiny_fit_with_mixup_and_the_augment_picture(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=1, extra="augment:\n  - RandomFlip: {mode: horizontal}\n"
                                     "  - MixUp: {alpha: 0.2, probability: 0.5}\n")
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["test"]["accuracy"] <= 1 and np.isfinite(metrics["train"]["loss"])
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert type(model.loss).__name__ == "CategoricalCrossentropy"
    picture = run_cli("augment", spec, "--data-dir", mnist_dir, "--out", tmp_path / "g.png", "--images", 3,
                      "--versions", 4)
    assert picture.exit_code == 0, picture.output
    assert picture.stdout == f"wrote {tmp_path / 'g.png'}\n"
    assert picture.stderr == ("note: MixUp (probability 0.5) mixed 2 of the 4 versions, the shown images being the "
                              "batch; a mixed image's label shares are written under it\n")

"""PatchWhitening: the kernel decorrelates patches, the spec checks its shape, fit computes it from the data."""
import json
import re
import zipfile

import numpy as np
import pytest

from cnntrain.backend import keras
from cnntrain.errors import SpecError
from cnntrain.model import build, whitening
from helpers.cli import run_cli
from helpers.specs import first_conv_spec, spec_of

WHITE = """\
name: white
model:
  input_shape: [8, 8, 3]
  layers:
    - Conv2D: {filters: 24, kernel_size: 2, kernel_initializer: PatchWhitening}
    - Flatten
    - Dense: {units: 10, activation: softmax}
"""


def correlated_images(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype(np.float32)
    x[..., 1] = 0.9 * x[..., 0] + 0.1 * x[..., 1]     # two channels nearly the same: far from white
    x[:, 1:] += 0.8 * x[:, :-1]                        # and neighbouring rows alike
    return x


def test_the_kernel_makes_patches_uncorrelated_with_unit_variance_and_their_negations():
    x = correlated_images()
    kernel = whitening.whitening_kernel(whitening.patch_covariance(x, 2, 2), (2, 2, 3, 24), eps=1e-8)
    conv = keras.layers.Conv2D(24, 2, use_bias=False)
    conv.build((None, 8, 8, 3))
    conv.kernel.assign(kernel)
    out = np.asarray(conv(x)).reshape(-1, 24)
    np.testing.assert_allclose(np.cov(out[:, :12].T), np.eye(12), atol=1e-4)
    np.testing.assert_allclose(out[:, 12:], -out[:, :12], atol=1e-5)


def test_the_covariance_is_numpys_over_every_patch():
    x = correlated_images(n=7)
    patches = np.stack([x[:, i:i + 3, j:j + 2].reshape(7, -1) for i in range(6) for j in range(7)], axis=1)
    np.testing.assert_allclose(whitening.patch_covariance(x, 3, 2, chunk=3), np.cov(patches.reshape(-1, 18).T),
                               rtol=1e-9, atol=1e-12)


def test_without_data_the_kernel_is_he_uniform_and_the_spec_names_it_plainly():
    model = build.build_model(spec_of(WHITE))
    assert isinstance(model.layers[0].kernel_initializer, whitening.PatchWhitening)
    assert model.layers[0].kernel.shape == (2, 2, 3, 24)
    assert whitening.whiten(model, (correlated_images() * 40 + 128).clip(0, 255).astype(np.uint8)) == [
        (model.layers[0].name, 200)]
    assert type(model.layers[0].kernel_initializer).__name__ == "HeUniform"


@pytest.mark.parametrize("layer, message", [
    ("Conv2D: {filters: 16, kernel_size: 2, kernel_initializer: PatchWhitening}",
     "spec.yaml:5:7: a PatchWhitening Conv2D of kernel 2x2 on 3 channels has 12 or 24 filters (the patch's 12 "
     "directions, then also their negations) and no dilation; this one has 16 filters, dilation (1, 1)\n"
     "  hint: set filters: 24"),
    ("Dense: {units: 4, kernel_initializer: PatchWhitening}",
     "spec.yaml:5:7: PatchWhitening initializes a Conv2D's kernel, not a Dense's\n"
     "  hint: use it as the kernel_initializer of a Conv2D (the first one)"),
])
def test_a_whitening_layer_that_cannot_work_is_a_spec_error(layer, message):
    text = WHITE.replace("Conv2D: {filters: 24, kernel_size: 2, kernel_initializer: PatchWhitening}", layer)
    with pytest.raises(SpecError) as caught:
        build.build_model(spec_of(text))
    assert str(caught.value) == message


def test_fit_whitens_the_first_conv_from_the_training_images_and_saves_a_plain_keras_model(mnist_dir, tmp_path):
    spec = first_conv_spec(tmp_path / "white.yaml", "filters: 8, kernel_size: 2, kernel_initializer: PatchWhitening, "
                                                     "trainable: false")
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert re.search(r"\nPatchWhitening: the kernel of conv2d(_\d+)? from the patches of 160 training images\n",
                     result.stderr), result.stderr
    with zipfile.ZipFile(tmp_path / "run" / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
    conv = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Conv2D")
    assert conv["config"]["kernel_initializer"]["class_name"] == "HeUniform"
    model = keras.models.load_model(tmp_path / "run" / "model.keras")   # plain Keras, no cnntrain objects

    from cnntrain.data import splits
    from cnntrain.spec import load_spec

    train = splits.prepare(load_spec(spec), data_dir=mnist_dir, offline=True).x_train / 255.0
    assert train.shape == (160, 28, 28, 1)
    expected = whitening.whitening_kernel(whitening.patch_covariance(train, 2, 2), (2, 2, 1, 8), 5e-4)
    np.testing.assert_allclose(np.asarray(model.layers[1].kernel), expected, rtol=1e-4, atol=1e-4)

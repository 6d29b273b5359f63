import json
import zipfile

import numpy as np

from cnntrain.backend import keras
from cnntrain.model import build, dirac
from helpers.cli import run_cli
from helpers.specs import first_conv_spec, spec_of

PASS_THROUGH = """\
name: dirac
model:
  input_shape: [6, 6, 4]
  layers:
    - Conv2D: {filters: 6, kernel_size: 3, padding: same, use_bias: false, kernel_initializer: Dirac}
"""


def test_the_first_filters_are_the_identity_and_the_others_glorot():
    kernel = keras.ops.convert_to_numpy(dirac.Dirac(seed=1)((3, 3, 4, 6)))
    identity = np.zeros((3, 3, 4, 4), dtype=np.float32)
    identity[1, 1, range(4), range(4)] = 1.0
    np.testing.assert_array_equal(kernel[..., :4], identity)
    glorot = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform(seed=1)((3, 3, 4, 6)))
    np.testing.assert_array_equal(kernel[..., 4:], glorot[..., 4:])


def test_more_inputs_than_filters_makes_every_filter_an_identity():
    kernel = keras.ops.convert_to_numpy(dirac.Dirac()((1, 1, 5, 2)))
    np.testing.assert_array_equal(kernel[0, 0], np.eye(5, 2, dtype=np.float32))


def test_a_spec_names_it_and_the_conv_passes_its_input_through():
    model = build.build_model(spec_of(PASS_THROUGH))
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype(np.float32)
    y = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(y[..., :4], x, rtol=0, atol=1e-6)
    assert np.abs(y[..., 4:]).sum() > 0


def test_fit_saves_a_plain_keras_model(mnist_dir, tmp_path):
    spec = first_conv_spec(tmp_path / "dirac.yaml", "filters: 4, kernel_size: 3, kernel_initializer: Dirac")
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "run" / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
    conv = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Conv2D")
    assert conv["config"]["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert "Dirac" not in json.dumps(config)   # plain Keras loads it without cnntrain's objects

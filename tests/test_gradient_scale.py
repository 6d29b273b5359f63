"""compile.gradient_scale: named variables' gradients multiplied before the optimizer step."""
import json
import zipfile

import numpy as np
import pytest

from cnntrain.backend import keras
from cnntrain.errors import SpecError
from cnntrain.model import build, gradient_scale
from helpers.cli import run_cli
from helpers.specs import spec_of

SPEC = """\
name: scaled
model:
  input_shape: [4, 4, 1]
  layers:
    - Conv2D: {filters: 3, kernel_size: 3, use_bias: false}
    - BatchNormalization: {scale: false}
    - Flatten
    - Dense: {units: 10, activation: softmax}
compile:
  optimizer: {SGD: {learning_rate: 0.1, momentum: 0.9, nesterov: true}}
  gradient_scale: {beta: 64}
"""


def one_step(spec):
    """The change of every trainable variable in one SGD step on fixed data, from fixed weights."""
    keras.utils.set_random_seed(0)
    model = build.build_model(spec)
    optimizer = build.build_optimizer(spec, 1)
    gradient_scale.attach(spec, optimizer, model.trainable_variables)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    before = [v.numpy().copy() for v in model.trainable_variables]
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.normal(size=(8, 4, 4, 1)), np.arange(8) % 2)
    return [(v.name, v.numpy() - b) for v, b in zip(model.trainable_variables, before)]


def test_a_scaled_gradient_moves_its_variable_k_times_as_far_and_the_rest_alike():
    scaled, plain = one_step(spec_of(SPEC)), one_step(spec_of(SPEC, ["compile.gradient_scale=null"]))
    assert [name for name, _ in scaled] == ["kernel", "beta", "kernel", "bias"]
    for (name, step), (_, plain_step) in zip(scaled, plain):
        if name == "beta":
            assert np.abs(plain_step).min() > 0
            np.testing.assert_allclose(step, 64 * plain_step, rtol=1e-5)
        else:
            np.testing.assert_array_equal(step, plain_step)


def test_keys_are_names_or_a_named_layers_with_wildcards_and_multiply():
    named = SPEC.replace("Dense: {units: 10,", "Dense: {name: head, units: 10,")
    model = build.build_model(spec_of(named))
    spec = spec_of(named, ["compile.gradient_scale={'*kernel': 2, head/kernel: 3, beta: 0.5, 'b?as': 5}"])
    assert gradient_scale.factors(spec, model.trainable_variables) == [2.0, 0.5, 6.0, 5.0]
    assert gradient_scale.factors(spec_of(SPEC, ["compile.gradient_scale=null"]), model.trainable_variables) is None


@pytest.mark.parametrize("value, line, message, hint", [
    ("{bta: 64}", "11:20", "'bta' matches no trainable variable of the model",
     "its trainable variables are named beta, bias, kernel; one layer's are LAYER/NAME, LAYER being the name: "
     "argument of that layer"),
    ("{beta: 0}", "11:26", "'compile.gradient_scale.beta' must be a number above 0, received: 0 (int)",
     "1 leaves the gradient as it is"),
    ("{beta: fast}", "11:26", "'compile.gradient_scale.beta' must be a number above 0, received: 'fast' (str)",
     "1 leaves the gradient as it is"),
    ("64", "11:19", "'compile.gradient_scale' must map variable names to numbers, received: 64 (int)",
     "e.g. gradient_scale: {beta: 64}, or leave it out"),
], ids=["no-such-variable", "zero", "text", "not-a-mapping"])
def test_check_names_the_line_of_a_wrong_entry(value, line, message, hint, tmp_path):
    path = tmp_path / "scaled.yaml"
    path.write_text(SPEC.replace("{beta: 64}", value))
    result = run_cli("check", path)
    assert (result.exit_code, result.stderr) == (1, f"{path}:{line}: {message}\n  hint: {hint}\n")


def test_a_spec_error_before_any_model_for_wrong_types():
    with pytest.raises(SpecError, match="must be a number above 0"):
        spec_of(SPEC.replace("{beta: 64}", "{beta: .inf}"))


def test_fit_trains_with_it_and_saves_plain_keras(mnist_dir, tmp_path):
    path = tmp_path / "scaled.yaml"
    path.write_text(SPEC.replace("input_shape: [4, 4, 1]", "input_shape: [28, 28, 1]")
                    + "data: {dataset: mnist, validation_split: 0.2}\nfit: {epochs: 1, batch_size: 32}\n")
    result = run_cli("fit", path, "--data-dir", mnist_dir, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "run" / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
    assert config["compile_config"]["optimizer"]["class_name"] == "SGD"
    keras.models.load_model(tmp_path / "run" / "model.keras")   # no cnntrain object needed

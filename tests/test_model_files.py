"""Model files from someone else, through the command line: which model an argument means (one
resolver for every command), and what a file may do: a SavedModel runs nothing without --unsafe, an
exported model's metadata is checked, its input size is bounded, raw scores become probabilities.

The models are made here, small and real: ONNX graphs written with onnx.helper, SavedModels with
tf.saved_model.save, .keras files with save_model.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from cnntrain.backend import keras, tf
from cnntrain.runs.model_file import save_model
from helpers.cli import run_cli
from helpers.models import metadata
from test_hostile import tree

CLASSES = 3
WEIGHTS = np.array([[1.0, -2.0, 3.0]], np.float32)   # scores = mean pixel * WEIGHTS


def onnx_model(path, *, side=8, channels=1, softmax=True, props=None):
    """(N, side, side, channels) float images -> (N, 3): the mean pixel times WEIGHTS, a softmax of
    it unless `softmax` is False (raw scores, as a graph exported without its last activation)."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["mean", "axis"], ["column"]),
             helper.make_node("MatMul", ["column", "weights"], ["scores" if softmax else "output"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["scores"], ["output"], axis=1))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", side, side, channels])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", CLASSES])],
        initializer=[helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("weights", TensorProto.FLOAT, [1, CLASSES], WEIGHTS.ravel().tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if props is not None:
        helper.set_model_props(model, props)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def image(path, value=128, side=8):
    Image.fromarray(np.full((side, side), value, np.uint8), "L").save(path)
    return path


def probabilities(result) -> list[float]:
    """The probabilities of classes 0, 1, 2 that `predict --json --top-k 3` printed for the one image."""
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)["predictions"][0]["top"]
    return [{t["class"]: t["probability"] for t in top}[str(c)] for c in range(CLASSES)]


# ---------------------------------------------------------------- one resolver, one set of inputs


def test_an_export_folder_and_its_file_are_the_same_model(tmp_path):
    folder = tmp_path / "serving"
    onnx_model(folder / "model.onnx")
    (folder / "cnntrain.json").write_text(json.dumps({"class_names": ["a", "b", "c"], "input_shape": [8, 8, 1]}))
    png = image(tmp_path / "x.png", value=51)   # mean 0.2 of 255: scores 0.2 * WEIGHTS
    scores = 51 * WEIGHTS[0]
    expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    for target in (folder, folder / "model.onnx"):
        result = run_cli("predict", png, "--model", target, "--json", "--top-k", 3)
        assert result.exit_code == 0, result.output
        top = json.loads(result.stdout)["predictions"][0]["top"]
        assert [t["class"] for t in top] == ["c", "a", "b"]
        assert np.allclose([t["probability"] for t in top], expected[[2, 0, 1]], atol=1e-6)


@pytest.mark.parametrize("command", [["filters"], ["activations", "IMAGE"], ["export", "--format", "tflite"]])
def test_commands_that_take_a_model_apart_name_what_they_need(command, tmp_path):
    model = onnx_model(tmp_path / "model.onnx")
    png = image(tmp_path / "x.png")
    args = [png if a == "IMAGE" else a for a in command[1:]]
    with_export = tmp_path / "export.json"
    for record, hint in ((None, "give the run folder or the .keras file the model was exported from"),
                         ({"model": "runs/tiny/1/model.keras"}, "give the .keras model it was exported from: "
                                                                "runs/tiny/1/model.keras")):
        if record:
            with_export.write_text(json.dumps(record))
        before = tree(tmp_path)
        result = run_cli(command[0], model, *args)
        assert (result.exit_code, result.stdout, result.stderr) == (
            1, "", f"{model}: is an ONNX model; {command[0]} needs a Keras model, given as a run folder or a "
                   f".keras file\n  hint: {hint}\n")
        assert tree(tmp_path) == before


def test_fit_init_from_a_model_with_code_does_not_hint_unsafe(tiny_spec, mnist_dir, tmp_path):
    lam = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: x * 2),
                            keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "lambda.keras"
    save_model(lam, path, metadata(input_shape=[28, 28, 1]))
    result = run_cli("fit", tiny_spec(), "--data-dir", mnist_dir, "--init-from", path, "--out", tmp_path / "run",
                     "--quiet")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2:] == [
        f"{path}: cannot load the model: it contains Python code (a Lambda layer), which is not run unless you "
        "trust the file",
        "  hint: --init-from takes only models without code; start from a model without Lambda layers"]
    assert "--unsafe" not in result.stderr


# ---------------------------------------------------------------- a SavedModel is a program


class _ReadsAndWrites(tf.Module):
    """A classifier whose serving function copies one file into another as it runs."""

    def __init__(self, secret, copy):
        super().__init__()
        self.secret, self.copy = str(secret), str(copy)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")])
    def serve(self, image):
        tf.io.write_file(self.copy, tf.io.read_file(self.secret))
        return {"output_0": tf.nn.softmax(tf.reduce_mean(image, axis=[1, 2]) * tf.ones([1, CLASSES]))}


class _WritesAtLoad(tf.saved_model.experimental.TrackableResource):
    """A resource whose initializer, run by tf.saved_model.load itself, writes a file."""

    def __init__(self, target):
        self.target = str(target)
        super().__init__()

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="cnntrain_test_writes_at_load")

    def _initialize(self):
        tf.io.write_file(self.target, "written at load")
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=tf.constant(1.0))


class _InitializerModel(tf.Module):
    def __init__(self, target):
        super().__init__()
        self.resource = _WritesAtLoad(target)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")])
    def serve(self, image):
        scale = tf.raw_ops.ReadVariableOp(resource=self.resource.resource_handle, dtype=tf.float32)
        return {"output_0": tf.nn.softmax(tf.reduce_mean(image, axis=[1, 2]) * tf.ones([1, CLASSES]) * scale)}


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """{kind: (SavedModel folder, the file it writes)} in a project folder with a secret in it."""
    root = tmp_path_factory.mktemp("project")
    (root / "secret.txt").write_text("the user's secret")
    reads = _ReadsAndWrites(root / "secret.txt", root / "stolen.txt")
    tf.saved_model.save(reads, str(root / "reads"), signatures={"serving_default": reads.serve})
    loads = _InitializerModel(root / "written-at-load.txt")
    tf.saved_model.save(loads, str(root / "loads"), signatures={"serving_default": loads.serve})
    assert not (root / "written-at-load.txt").exists()
    return root, {"reads": (root / "reads", root / "stolen.txt"), "loads": (root / "loads", root / "written-at-load.txt")}


@pytest.mark.parametrize("kind", ["reads", "loads"])
def test_a_savedmodel_runs_nothing_without_unsafe(kind, saved_models, tmp_path):
    root, models = saved_models
    folder, written = models[kind]
    png = image(tmp_path / "x.png")
    refused = (f"{folder}: cannot load the model: a SavedModel is a TensorFlow program whose operations run when it "
               "is loaded and called (they can read and write files), which is not done unless you trust it\n"
               "  hint: the folder is a program; load it only if you trust it, with --unsafe\n")
    before = tree(root)
    for args in (["predict", png, "--model", folder], ["evaluate", folder]):
        result = run_cli(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", refused), args
        assert tree(root) == before
    # The file does what it says when it is trusted: the refusal above is what kept the tree unchanged.
    result = run_cli("predict", png, "--model", folder, "--unsafe")
    assert result.exit_code == 0, result.output
    assert written.is_file()
    written.unlink()


def test_a_tflite_with_tensorflow_ops_runs_nothing_without_unsafe(tmp_path):
    """A .tflite converted with TensorFlow (Flex) ops: TensorFlow's pip package runs them through
    tf.lite.Interpreter, cnntrain's interpreter where ai-edge-litert is missing, so a file could
    write files as a SavedModel can. Refused before any interpreter (the child probe too) sees it."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "secret.txt").write_text("the user's secret")
    module = _ReadsAndWrites(root / "secret.txt", root / "stolen.txt")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    flex = root / "flex.tflite"
    flex.write_bytes(converter.convert())
    png = image(tmp_path / "x.png")
    before = tree(root)
    for args in (["predict", png, "--model", flex], ["evaluate", flex]):
        result = run_cli(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (
            1, "", f"{flex}: cannot load the model: it holds TensorFlow operations (ReadFile, WriteFile), which can "
                   "read and write files when they run and are not run unless you trust the file\n"
                   "  hint: the file holds TensorFlow (Flex) operations; load it only if you trust it, with "
                   "--unsafe\n"), args
        assert tree(root) == before
    # Trusted, it reaches the runtime: one with the Flex delegate runs it (and writes), one without
    # (TensorFlow 2.21's tf.lite, ai-edge-litert) refuses it in its own words.
    result = run_cli("predict", png, "--model", flex, "--unsafe")
    assert result.exit_code == 0 and (root / "stolen.txt").is_file() or (
        result.exit_code == 1 and "Select TensorFlow op(s), included in the given model, is(are) not supported"
        in result.stderr), result.output


# ---------------------------------------------------------------- what an exported model says of itself

HINT = "the exported model's metadata was changed after export; export the model again with 'cnntrain export'"
METADATA_CASES = [
    ("a list", [1, 2], "damaged: the file must hold an object, received: [1, 2] (list)"),
    ("class_names: 10", {"class_names": 10}, "damaged: 'class_names' must be a non-empty list of texts, received: "
                                             "10 (int)"),
    ("label_smoothing: lots", {"label_smoothing": "lots"},
     "damaged: 'label_smoothing' must be a finite number in [0, 1], received: 'lots' (str)"),
    ("image_size: 5", {"image_size": 5}, "damaged: 'image_size' must be a 2 list of integer >= 1s, received: "
                                         "5 (int)"),
    ("image_size of another model", {"image_size": [28, 28]}, "damaged: 'image_size' is [28, 28], but the model "
                                                              "takes [8, 8]"),
    ("class_names of another model", {"class_names": ["a", "b"]}, "damaged: 'class_names' names 2 classes, but the "
                                                                  "model outputs 3"),
]


@pytest.mark.parametrize("what,value,message", METADATA_CASES, ids=[c[0] for c in METADATA_CASES])
def test_exported_metadata_is_checked(what, value, message, tmp_path):
    png = image(tmp_path / "x.png")
    beside = onnx_model(tmp_path / "beside" / "model.onnx")
    (beside.parent / "cnntrain.json").write_text(json.dumps(value))
    inside = onnx_model(tmp_path / "inside" / "model.onnx", props={"cnntrain": json.dumps(value)})
    for model, where in ((beside, beside.parent / "cnntrain.json"), (inside, f"{inside}:metadata_props[cnntrain]")):
        result = run_cli("predict", png, "--model", model)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"{where}: {message}\n  hint: {HINT}\n")


def test_deeply_nested_exported_metadata(tmp_path):
    model = onnx_model(tmp_path / "model.onnx")
    (tmp_path / "cnntrain.json").write_text("[" * 100_000)
    result = run_cli("predict", image(tmp_path / "x.png"), "--model", model)
    assert (result.exit_code, result.stderr) == (1, f"{tmp_path / 'cnntrain.json'}: cannot read JSON: nested too "
                                                    "deeply\n")


def test_raw_scores_become_probabilities_with_a_note(tmp_path):
    png = image(tmp_path / "x.png", value=51)
    scores = 51 * WEIGHTS[0]
    result = run_cli("predict", png, "--model", onnx_model(tmp_path / "scores.onnx", softmax=False), "--json",
                     "--top-k", 3)
    expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    assert np.allclose(probabilities(result), expected, atol=1e-6)
    assert result.stderr == ("note: the model's outputs are not probabilities over the 3 classes (a row sums to "
                             "510): they are taken as scores (logits) and a softmax over the classes applied\n")
    # A model that outputs a distribution gets no note, and its own figures.
    result = run_cli("predict", png, "--model", onnx_model(tmp_path / "probs.onnx"), "--json", "--top-k", 3)
    assert np.allclose(probabilities(result), expected, atol=1e-6) and result.stderr == ""


# ---------------------------------------------------------------- the input a model may ask for


def test_a_model_asking_for_a_huge_input_is_refused_before_any_image_is_read(tmp_path):
    png = image(tmp_path / "x.png")
    big_onnx = onnx_model(tmp_path / "big.onnx", side=20000)
    assert big_onnx.stat().st_size < 400
    big_keras = tmp_path / "big.keras"
    model = keras.Sequential([keras.Input((20000, 20000, 1)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    save_model(model, big_keras, metadata([str(i) for i in range(CLASSES)], input_shape=[20000, 20000, 1]))
    for path in (big_onnx, big_keras):
        before = tree(tmp_path)
        result = run_cli("predict", png, "--model", path)
        assert (result.exit_code, result.stdout, result.stderr) == (
            1, "", f"{path}: the model takes 20000x20000 images; cnntrain resizes images to at most 16,777,216 "
                   "pixels (4096x4096), so this model is refused before any image is read\n"
                   "  hint: give an image classifier with a smaller input, such as a run's model.keras\n")
        assert tree(tmp_path) == before


# ---------------------------------------------------------------- malformed .tflite files


def tflite_with(path, change):
    """A small real .tflite (Conv2D, Flatten, Dense), its flatbuffer changed by `change(model)`
    (ai_edge_litert's object form of the flatbuffer: model.subgraphs, model.buffers)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    plain = path.with_name("plain.tflite")
    if not plain.exists():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                                  keras.layers.Dense(CLASSES, activation="softmax")])
        model.export(str(plain), format="litert", verbose=False)
    tree_ = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(plain.read_bytes(), 0))
    change(tree_)
    builder = flatbuffers.Builder(1024)
    builder.Finish(tree_.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path, len(tree_.subgraphs[0].tensors)


def _bad_index(model):
    graph = model.subgraphs[0]
    graph.operators[0].inputs = [999, *graph.operators[0].inputs[1:]]


def _zero_stride(model):
    conv = next(op for op in model.subgraphs[0].operators if hasattr(op.builtinOptions, "strideW"))
    conv.builtinOptions.strideW = conv.builtinOptions.strideH = 0


def test_malformed_tflite_files_are_clear_errors(tmp_path):
    # Both passed LiteRT's flatbuffer check and ended in "internal error: RuntimeError"; a file like
    # them crashed LiteRT (exit 139): each is tried in a child process before this one loads it.
    png = image(tmp_path / "x.png")
    bad, tensors = tflite_with(tmp_path / "bad-index.tflite", _bad_index)
    result = run_cli("predict", png, "--model", bad)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "", f"{bad}: not a readable TFLite model file (Invalid tensor index 999 in node inputs. The subgraph has "
               f"{tensors} tensors)\n  hint: give a model written by 'cnntrain export', or a run's model.keras\n")
    zero, _ = tflite_with(tmp_path / "zero-stride.tflite", _zero_stride)
    result = run_cli("predict", png, "--model", zero)
    first, hint = result.stderr.splitlines()
    assert result.exit_code == 1 and result.stdout == ""
    assert first.startswith(f"{zero}: not a readable TFLite model file (") and "stride" in first
    assert first.endswith("(CONV_2D) failed to prepare.)")
    assert hint == "  hint: give a model written by 'cnntrain export', or a run's model.keras"


def _constant_input(model):
    """The image input given a buffer of its own: a constant, which LiteRT leaves in the file's
    read-only memory map, so writing an image into it is a segmentation fault (found by trying
    changes to the flatbuffer offline; the file passes LiteRT's verifier and allocate_tensors)."""
    from ai_edge_litert import schema_py_generated as schema

    graph = model.subgraphs[0]
    image_tensor = graph.tensors[graph.inputs[0]]
    zeros = schema.BufferT()
    zeros.data = np.zeros(int(np.prod(image_tensor.shape)) * 4, np.uint8)
    model.buffers.append(zeros)
    image_tensor.buffer = len(model.buffers) - 1


def test_a_tflite_that_crashes_litert_is_a_clear_error(tmp_path):
    # Loaded in this process, the file would kill it (SIGSEGV, nothing to catch): predict and evaluate
    # try an unknown .tflite in a child process first, so they name the file and exit 1.
    models = tmp_path / "models"
    models.mkdir()
    crash, _ = tflite_with(models / "crash.tflite", _constant_input)
    (models / "serving").mkdir()
    (models / "serving" / "model.tflite").write_bytes(crash.read_bytes())
    runs_it = ("import numpy as np; from cnntrain.loading.probe import interpreter_class; "
               f"i = interpreter_class()(model_path={str(crash)!r}); i.allocate_tensors(); "
               "d = i.get_input_details()[0]; i.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))")
    assert subprocess.run([sys.executable, "-c", runs_it], capture_output=True).returncode == -signal.SIGSEGV
    png = image(tmp_path / "x.png")
    before = tree(models)
    for args, named in ((["predict", png, "--model", crash], crash), (["evaluate", crash], crash),
                        (["evaluate", models / "serving"], models / "serving" / "model.tflite")):
        result = run_cli(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (
            1, "", f"{named}: not a readable TFLite model file (the TFLite runtime crashed on it: SIGSEGV)\n"
                   "  hint: give a model written by 'cnntrain export', or a run's model.keras\n"), args
        assert tree(models) == before

"""`cnntrain evaluate` and `cnntrain predict`: a trained model on test data and on image files."""
from __future__ import annotations

import json
import sys

import click
from click.core import ParameterSource

from cnntrain.commands.options import (data_options, invert_option, json_option, runs_option, say_error, say_model, say_wrote,
                                       tta_option, unsafe_option)


@click.command()
@click.argument("target", required=False, metavar="[RUN | MODEL.keras]")
@data_options
@click.option("--split", type=click.Choice(["test", "train", "validation"]), default="test", show_default=True,
              help="Which split of the model's dataset to evaluate on. validation: the images the run's spec "
                   "held out (data.validation: split), where choices such as --tta are made without the test set.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="k of top-k accuracy, shown when k is below the number of classes.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@tta_option
@runs_option
@unsafe_option
@json_option("Print the figures as JSON.")
def evaluate(target, data_dir, offline, split, top_k, batch_size, tta, runs_root, unsafe, as_json):
    """Test loss, accuracy, top-k accuracy, per-class precision/recall/F1 and the confusion
    matrix of a run's model (default: the newest finished run) or of a .keras file.

    Writes eval.json and confusion.png into the run folder (eval-train.json and confusion-train.png
    for --split train, eval-validation.json and confusion-validation.png for --split validation), or
    MODEL.eval.json and MODEL.confusion.png beside a .keras file."""
    from cnntrain.views import console, tables
    from cnntrain.assess.evaluate import evaluate_run

    result, written = evaluate_run(target, runs_root=runs_root, data_dir=data_dir, offline=offline, split=split,
                                  top_k=top_k, batch_size=batch_size, unsafe=unsafe, tta=tta)
    if result.get("note"):
        console.err.print(f"note: {console.escape(result['note'])}")
    classes = len(result["class_names"])
    # Not said for the default: a model of 5 classes or fewer would get it at every evaluate.
    if top_k >= classes and click.get_current_context().get_parameter_source("top_k") is ParameterSource.COMMANDLINE:
        console.note(f"note: --top-k {top_k} is not below the model's {classes} classes: every image's label is "
                     f"among its top {top_k}, so top-k accuracy (always 100%) is left out")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    tables.show_evaluation(console.out, result)
    say_wrote(*written, err=True)


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGE... | DIR | GLOB")
@click.option("--model", "model_path", type=click.Path(),
              help="A .keras, .tflite or .onnx model file, or a SavedModel / export folder.")
@click.option("--run", "run", help="A run folder (default: the newest finished run).")
@runs_option
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Classes shown per image.")
@invert_option
@tta_option
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images per prediction batch; fewer where the model's input is large (a batch's images "
                   "take at most 256 MB as the model is fed them).")
@unsafe_option
@json_option("Print the predictions as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Also write the predictions to a CSV file.")
def predict(inputs, model_path, run, runs_root, top_k, invert, tta, batch_size, unsafe, as_json, csv_path):
    """Classify image files (PNG, JPEG, BMP, GIF, TIFF, WebP), folders of them, or glob
    patterns, with the top-k classes and their probabilities.

    Images are converted to the model's input. For a grayscale model trained on one plain
    ground (MNIST-like), a picture of another size is read as MNIST's digits were made:
    cropped to its ink, scaled into the middle 20/28 keeping its aspect, centred by its
    centre of mass; other pictures are resized. The model applies its own preprocessing.
    A top probability under 0.5 gets a note (--json: "low_confidence"): the image may not
    be one of the classes; more than three such images get one note for all. A file that
    cannot be read gets its own error line, the others are still predicted, and the exit
    status is 1."""
    from cnntrain.views import console, csvfile, tables
    from cnntrain.assess.predict import (FEW_LOW_CONFIDENCE_NOTES, inverted_note, low_confidence_note,
                                         low_confidence_summary, predict_files)
    from cnntrain.assess.tta import label

    if model_path and run:
        raise click.UsageError("give --model or --run, not both")
    rows, errors, info = predict_files(list(inputs), target=model_path or run, runs_root=runs_root, top_k=top_k,
                                       invert=invert, batch_size=batch_size, unsafe=unsafe, tta=tta)
    if not as_json and info["model"] is not None:
        say_model(f"{info['model']}{label(info['tta'])}")
    if info.get("note"):
        console.note(f"note: {info['note']}")
    if info["classes"] is not None:
        _say_capped(top_k, info["top_k"], info["classes"])
    unsure = sum(1 for row in rows if row.get("low_confidence"))
    for row in rows:
        if row.get("inverted") and not as_json:
            console.note(inverted_note(row["file"], info["background"]))
        if row.get("low_confidence") and not as_json and unsure <= FEW_LOW_CONFIDENCE_NOTES:
            console.note(low_confidence_note(row, info["classes"]))
    if unsure > FEW_LOW_CONFIDENCE_NOTES and not as_json:
        console.note(low_confidence_summary(unsure, len(rows), info["classes"]))
    if csv_path:
        csvfile.predictions_csv(rows, csv_path)
    if as_json:
        click.echo(json.dumps({"model": str(info.get("model")), "tta": info["tta"], "predictions": rows,
                               "errors": [{"file": e.file, "error": e.message} for e in errors]}, indent=2))
    elif rows:
        tables.show_predictions(console.out, rows, info["top_k"])
    for error in errors:
        say_error(error)
    if errors:
        sys.exit(1)


def _say_capped(asked: int, k: int, classes: int) -> None:
    if asked > k:
        from cnntrain.views import console

        console.err.print(f"note: --top-k {asked} is more than the model's {classes} classes: top-{k} shown")

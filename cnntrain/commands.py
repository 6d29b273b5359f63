"""The commands after training: evaluate, predict, data, augment, filters, activations.

Part of the CLI layer with cli.py (which holds the group and the error translation);
each command imports what it needs when it runs.
"""
from __future__ import annotations

import json
import sys

import click

from cnntrain.cli import _data_options, _spec_options, cli

RUNS_HELP = "Where the run folders are."


@cli.command()
@click.argument("target", required=False, metavar="[RUN | MODEL.keras]")
@_data_options
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which split of the model's dataset to evaluate on.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="k of top-k accuracy.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--runs", "runs_root", default="runs", show_default=True, help=RUNS_HELP)
@click.option("--unsafe", is_flag=True, help="Allow model files that contain code (Lambda layers). Only for files you trust.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def evaluate(target, data_dir, offline, split, top_k, batch_size, runs_root, unsafe, as_json):
    """Test loss, accuracy, top-k accuracy, per-class precision/recall/F1 and the confusion
    matrix of a run's model (default: the newest finished run) or of a .keras file.

    Writes eval.json and confusion.png into the run folder."""
    from cnntrain import report, ui
    from cnntrain.evaluate import evaluate_run

    if unsafe:
        ui.err.print("warning: --unsafe lets the model file run its own code", style="yellow")
    result, folder = evaluate_run(target, runs_root=runs_root, data_dir=data_dir, offline=offline, split=split,
                                  top_k=top_k, batch_size=batch_size, unsafe=unsafe)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    report.show_evaluation(ui.out, result)
    if folder:
        ui.err.print(f"wrote eval.json and confusion.png to {ui.escape(str(folder))}")


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGE... | DIR | GLOB")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="A .keras model file.")
@click.option("--run", "run", help="A run folder (default: the newest finished run).")
@click.option("--runs", "runs_root", default="runs", show_default=True, help=RUNS_HELP)
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Classes shown per image.")
@click.option("--invert", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Invert images whose background is the opposite of the training images' (auto: detect).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--unsafe", is_flag=True, help="Allow model files that contain code (Lambda layers). Only for files you trust.")
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Also write the predictions to a CSV file.")
def predict(inputs, model_path, run, runs_root, top_k, invert, batch_size, unsafe, as_json, csv_path):
    """Classify image files (PNG, JPEG, BMP, GIF, TIFF, WebP), folders of them, or glob
    patterns, with the top-k classes and their probabilities.

    Images are converted and resized to the model's input; the model applies its own
    preprocessing. A file that cannot be read gets its own error line, the others are
    still predicted, and the exit status is 1."""
    from cnntrain import report, ui
    from cnntrain.predict import predict_files

    if model_path and run:
        raise click.UsageError("give --model or --run, not both")
    if unsafe:
        ui.err.print("warning: --unsafe lets the model file run its own code", style="yellow")
    rows, errors, info = predict_files(list(inputs), target=model_path or run, runs_root=runs_root, top_k=top_k,
                                       invert=invert, batch_size=batch_size, unsafe=unsafe)
    for row in rows:
        if row.get("inverted") and not as_json:
            ui.err.print(f"note: {ui.escape(row['file'])} has a light background; inverted it to match the "
                         "training images (--invert no to keep it)")
    if csv_path:
        report.predictions_csv(rows, csv_path)
    if as_json:
        click.echo(json.dumps({"model": str(info.get("model")), "predictions": rows,
                               "errors": [{"file": e.file, "error": e.message} for e in errors]}, indent=2))
    elif rows:
        report.show_predictions(ui.out, rows, top_k)
    for error in errors:
        click.echo(str(error) if error.location else f"error: {error}", err=True)
    if errors:
        sys.exit(1)


@cli.command()
@click.argument("action", type=click.Choice(["list", "verify"]), default="list")
@click.argument("name", required=False)
@click.option("--path", help="A dataset file or folder (as data.path in a spec).")
@_data_options
def data(action, name, path, data_dir, offline):
    """Where each dataset is found (list), or load one and check its shapes, counts and
    checksums (verify NAME)."""
    from rich.table import Table

    from cnntrain import datasets, ui

    if action == "list":
        table = Table(title="datasets, in lookup order")
        for column in ("dataset", "location", "found"):
            table.add_column(column)
        for dataset in [name] if name else [d for d in datasets.DATASETS if d != "image_folder"]:
            for location, exists in datasets.find_dataset(dataset, path=path, data_dir=data_dir):
                table.add_row(dataset, ui.escape(str(location)), "yes" if exists else "-")
        ui.out.print(table)
        return
    if not name:
        raise click.UsageError("verify needs a dataset name, e.g. 'cnntrain data verify mnist'")
    report = datasets.verify_dataset(name, path=path, data_dir=data_dir, offline=offline)
    click.echo(json.dumps(report, indent=2))


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@_spec_options
@_data_options
@click.option("--out", type=click.Path(dir_okay=False), default="augment.png", show_default=True, help="PNG to write.")
@click.option("--images", type=click.IntRange(1, 16), default=6, show_default=True, help="Training images shown.")
@click.option("--versions", type=click.IntRange(1, 16), default=7, show_default=True, help="Augmented versions of each.")
def augment(spec, overrides, data_dir, offline, out, images, versions):
    """A picture of a few training images and augmented versions of each, as the spec's
    augment section makes them during fit."""
    from cnntrain.augment_grid import augment_grid
    from cnntrain.spec import load_spec

    path = augment_grid(load_spec(spec, overrides), out, data_dir=data_dir, offline=offline, images=images,
                        versions=versions)
    click.echo(f"wrote {path}")


def _model_of(target, runs_root, unsafe):
    from cnntrain import runs
    from cnntrain.evaluate import resolve_model

    model_file, _ = resolve_model(target, runs_root)
    return runs.load_model(model_file, unsafe=unsafe)


@cli.command()
@click.argument("target", required=False, metavar="[RUN | MODEL.keras]")
@click.option("--out", type=click.Path(dir_okay=False), default="filters.png", show_default=True)
@click.option("--runs", "runs_root", default="runs", show_default=True, help=RUNS_HELP)
@click.option("--unsafe", is_flag=True, help="Allow model files that contain code.")
def filters(target, out, runs_root, unsafe):
    """The learned kernels of the first convolution as a grid of small images."""
    from cnntrain.pictures import filters_figure

    model, _ = _model_of(target, runs_root, unsafe)
    info = filters_figure(model, out)
    click.echo(f"wrote {info['path']}: {info['shown']} filters of {info['layer']}")


@cli.command()
@click.argument("target", metavar="RUN | MODEL.keras")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default="activations.png", show_default=True)
@click.option("--maps", type=click.IntRange(1, 64), default=16, show_default=True, help="Feature maps per layer.")
@click.option("--runs", "runs_root", default="runs", show_default=True, help=RUNS_HELP)
@click.option("--unsafe", is_flag=True, help="Allow model files that contain code.")
def activations(target, image, out, maps, runs_root, unsafe):
    """IMAGE and the feature maps it produces at every convolution and pooling layer."""
    from cnntrain.evaluate import input_shape_of
    from cnntrain.images import read_image
    from cnntrain.pictures import activations_figure

    model, metadata = _model_of(target, runs_root, unsafe)
    height, width, channels = input_shape_of(model, metadata)
    pixels = read_image(image, height=height, width=width, channels=channels)
    info = activations_figure(model, pixels, out, max_maps=maps)
    click.echo(f"wrote {info['path']}: {len(info['layers'])} layers")


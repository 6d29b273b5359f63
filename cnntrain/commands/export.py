"""The export command: a run's model as a SavedModel, TFLite or ONNX file, checked against the .keras model.

Part of the CLI layer (cli.py registers it); the work is in cnntrain.export.
"""
from __future__ import annotations

import json

import click

from cnntrain.commands.options import data_options, json_option, runs_option, unsafe_option
from cnntrain.errors import CnntrainError, printable
from cnntrain.export import DEFAULT_CHECK_IMAGES, FORMATS, QUANTIZE


@click.command("export")
@click.argument("target", required=False, metavar="[RUN | MODEL.keras]")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="savedmodel (TensorFlow Serving), tflite (mobile and edge), onnx (other runtimes).")
@click.option("--quantize", type=click.Choice(QUANTIZE), default="none", show_default=True,
              help="TFLite only: dynamic (int8 weights), float16 (float16 weights), int8 (integer kernels, "
                   "calibrated on training images).")
@click.option("--out", type=click.Path(), help="Folder to write (default: <run>/export/<format>[-<quantize>]): a new "
              "or empty folder, or an earlier export's, where only the files exports wrote are replaced.")
@click.option("--check-images", type=click.Path(), metavar="DIR",
              help="Check on these image files instead of the test split (DIR/<class>/<image> also gives accuracy).")
@click.option("--check-samples", type=click.IntRange(min=1), default=DEFAULT_CHECK_IMAGES, show_default=True,
              help="At most this many check images (a seeded random subset).")
@data_options
@runs_option
@unsafe_option
@json_option("Print export.json's figures as JSON.")
def export(target, fmt, quantize, out, check_images, check_samples, data_dir, offline, runs_root, unsafe, as_json):
    """Export a run's model (default: the newest finished run) or a .keras file as a SavedModel,
    a TFLite file or an ONNX file, and check it.

    The exported model takes the same 0-255 images as the .keras model (normalization inside);
    cnntrain.json beside it holds the class names. The check runs both models on the test
    images of the model's data set (without a test split, those its run held out) and reports
    top-1 agreement, the largest probability difference, accuracy, size and single-image latency
    (also in export.json); outside the tolerance of the format, the exit status is 1."""
    from cnntrain.export import export_model
    result = export_model(target, fmt=fmt, quantize=quantize, out=out, runs_root=runs_root, data_dir=data_dir,
                          offline=offline, check_images=check_images, check_samples=check_samples, unsafe=unsafe)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        from cnntrain.views import console

        # Folded between words on a terminal: the tolerance line is 81 characters for TFLite.
        click.echo(console.fitted("\n".join(report_lines(result)), console.out.size.width))
    if not result["passed"]:
        raise CnntrainError("the exported model is outside its tolerance: " + "; ".join(result["failures"]),
                            file=result["file"],
                            hint="the files are kept for a look and export.json holds the figures; check the "
                                 "model with 'cnntrain predict --model' or export without quantization")


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _percent(v) -> str:
    return f"{v:.2%}"


def report_lines(result: dict) -> list[str]:
    """The export's figures as the command prints them."""
    c, lat, tol = result["check"], result["latency_ms"], result["tolerance"]
    what = result["format"] + ("" if result["quantize"] == "none" else f" {result['quantize']}")
    lines = [
        f"{what}: {printable(result['file'])}",   # a folder name may hold control characters
        f"  size       {_size(result['size_bytes'])} (model.keras {_size(result['keras_size_bytes'])})",
        f"  checked on {c['images']:,} images, the {c['source']}",
        f"  agreement  {_percent(c['agreement'])} top-1 ({c['disagreements']} differ), "
        f"max probability difference {c['max_abs_diff']:.2g}",
    ]
    if c["accuracy"] is not None:
        lines.append(f"  accuracy   {_percent(c['accuracy'])} (Keras {_percent(c['keras_accuracy'])}, "
                     f"drop {c['accuracy_drop'] * 100:.2f} points)")
    if result.get("representative"):
        rep = result["representative"]
        lines.append(f"  calibrated on {rep['images']} images of the {rep['from']}")
    lines.append(f"  latency    {lat['exported']:.2f} ms per image (Keras {lat['keras']:.2f} ms), median of {lat['runs']}")
    if result.get("keras_compute_dtype", "float32") != "float32" and result["quantize"] == "none":
        lines.append(f"  note       the .keras model computes in {result['keras_compute_dtype']} (mixed precision), the "
                     "export in float32: held to the float16 bounds")
    verdict = "OK" if result["passed"] else "OUTSIDE"
    bounds = [f"top-1 agreement >= {tol['min_agreement']:.1%}"]
    if tol["max_diff"] is not None:
        bounds.append(f"max difference <= {tol['max_diff']:g}")
    bounds.append(f"accuracy drop <= {tol['max_accuracy_drop'] * 100:g} points")
    lines.append(f"  tolerance  {', '.join(bounds)}: {verdict}")
    return lines

"""`cnntrain filters` and `cnntrain activations`: pictures of what a trained model learned."""
from __future__ import annotations

import click

from cnntrain.commands.options import invert_option, picture_option, runs_option, say_model, say_wrote, unsafe_option
from cnntrain.errors import plural


def _model_of(target, runs_root, unsafe, command):
    from cnntrain.loading.runners import load_keras

    model, metadata, ref = load_keras(target, runs_root, command=command, unsafe=unsafe)
    say_model(ref.path)
    return model, metadata


@click.command()
@click.argument("target", required=False, metavar="[RUN | MODEL.keras]")
@picture_option("filters.png")
@runs_option
@unsafe_option
def filters(target, out, runs_root, unsafe):
    """The learned kernels of the first convolution as a grid of small images (inside the backbone,
    where the model has one)."""
    from cnntrain.errors import printable
    from cnntrain.insight.maps import filters_figure

    model, _ = _model_of(target, runs_root, unsafe, "filters")
    info = filters_figure(model, out)
    # The layer's name comes from the model file.
    say_wrote(info["path"], detail=f": {plural(info['shown'], 'filter')} of {printable(info['layer'])}")


@click.command()
@click.argument("target", metavar="RUN | MODEL.keras")
@click.argument("image", type=click.Path(dir_okay=False))
@picture_option("activations.png")
@click.option("--maps", type=click.IntRange(1, 64), default=16, show_default=True, help="Feature maps per layer.")
@invert_option
@runs_option
@unsafe_option
def activations(target, image, out, maps, invert, runs_root, unsafe):
    """IMAGE and the feature maps it produces at every convolution and pooling layer.

    The image is read, inverted, cropped and centred or resized exactly as `cnntrain predict`
    reads it, and drawn as the model receives it."""
    from cnntrain.assess.predict import auto_background, inverted_note, read_for_model
    from cnntrain.insight.maps import activations_figure
    from cnntrain.runs.model_file import input_shape_of
    from cnntrain.views import console

    model, metadata = _model_of(target, runs_root, unsafe, "activations")
    shape = input_shape_of(model, metadata)
    background = auto_background(metadata, shape)
    pixels, inverted = read_for_model(image, shape, invert, background, metadata.get("resize", "stretch"))
    if inverted:
        console.note(inverted_note(image, background))
    info = activations_figure(model, pixels, out, max_maps=maps)
    say_wrote(info["path"], detail=f": {plural(len(info['layers']), 'layer')}")


@click.command()
@click.argument("target", metavar="RUN | MODEL.keras")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="IMAGE...")
@click.option("--out", type=click.Path(file_okay=False), default="explain", show_default=True,
              help="The folder to write one <image name>.png per image into.")
@click.option("--class", "class_name", default=None, help="The class to explain (default: each image's predicted class).")
@click.option("--top-k", type=click.IntRange(1), default=3, show_default=True, help="Classes written on each picture.")
@invert_option
@runs_option
@unsafe_option
@click.option("--json", "as_json", is_flag=True, help="Print each image's class, peak and picture as JSON.")
def explain(target, images, out, class_name, top_k, invert, runs_root, unsafe, as_json):
    """Where the model looked: each IMAGE with the Grad-CAM class activation map of its predicted
    class (or --class) drawn over it, and its top classes written on it.

    The image is read, resized and inverted exactly as `cnntrain predict` reads it. The map is
    taken at the last feature maps, inside a backbone where the model has one."""
    import json
    from pathlib import Path

    from cnntrain.assess.predict import auto_background, inverted_note, read_for_model
    from cnntrain.errors import CnntrainError, printable
    from cnntrain.insight.gradcam import explain_figure
    from cnntrain.runs.model_file import class_names_of, input_shape_of
    from cnntrain.views import console

    model, metadata = _model_of(target, runs_root, unsafe, "explain")
    names = class_names_of(model, metadata)
    if class_name is not None and class_name not in names:
        raise CnntrainError(f"--class {class_name!r} is not a class of this model",
                            hint=f"its classes are: {', '.join(names)}")
    shape = input_shape_of(model, metadata)
    background = auto_background(metadata, shape)
    results, stems = [], set()
    for image in images:
        stem = Path(image).stem
        while stem in stems:   # two a.png from two folders: a.png and a-2.png, never one over the other
            stem = f"{Path(image).stem}-{len(stems)}"
        stems.add(stem)
        pixels, inverted = read_for_model(image, shape, invert, background)
        if inverted:
            console.note(inverted_note(image, background))
        info = explain_figure(model, pixels, names, Path(out) / f"{stem}.png", top_k=top_k,
                              class_index=None if class_name is None else names.index(class_name))
        results.append({"image": str(image), **info})
        if not as_json:
            click.echo(f"wrote {printable(info['path'])}: {printable(info['class'])} "
                       f"(maps of {printable(info['layer'])})")
    if as_json:
        click.echo(json.dumps(results, indent=2))

"""`cnntrain filters` and `cnntrain activations`: pictures of what a trained model learned."""
from __future__ import annotations

import click

from cnntrain.commands.options import invert_option, picture_option, runs_option, say_model, say_wrote, unsafe_option
from cnntrain.errors import plural


def _model_of(target, runs_root, unsafe):
    from cnntrain.runs.model_file import load_model, resolve_model

    model_file, _ = resolve_model(target, runs_root)
    loaded = load_model(model_file, unsafe=unsafe)
    say_model(model_file)
    return loaded


@click.command()
@click.argument("target", required=False, metavar="[RUN | MODEL.keras]")
@picture_option("filters.png")
@runs_option
@unsafe_option
def filters(target, out, runs_root, unsafe):
    """The learned kernels of the first convolution as a grid of small images."""
    from cnntrain.errors import printable
    from cnntrain.insight.maps import filters_figure

    model, _ = _model_of(target, runs_root, unsafe)
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

    model, metadata = _model_of(target, runs_root, unsafe)
    shape = input_shape_of(model, metadata)
    background = auto_background(metadata, shape)
    pixels, inverted = read_for_model(image, shape, invert, background)
    if inverted:
        console.err.print(console.escape(inverted_note(image, background)))
    info = activations_figure(model, pixels, out, max_maps=maps)
    say_wrote(info["path"], detail=f": {plural(len(info['layers']), 'layer')}")

"""Options that several commands share, each defined once."""
from __future__ import annotations

import click

from cnntrain.errors import printable
from cnntrain.spec.schema import INVERT_CHOICES, TTA_CHOICES

SET_HELP = "Override a spec value, e.g. --set fit.epochs=3 (repeatable; the value is YAML)."
RUNS_HELP = "Where the run folders are."


def spec_options(f):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(f)


def trust_option(f):
    return click.option("--trust-spec", "trust_spec", is_flag=True,
                        help="The spec is yours: let it use any Keras callback, write outside its run folder "
                             "and reach the network (refused by default: a spec may come from anyone).")(f)


def data_options(f):
    f = click.option("--offline", is_flag=True, help="Never download: use only local files.")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False), envvar="CNNTRAIN_DATA_DIR",
                     help="Folder holding the dataset files [env: CNNTRAIN_DATA_DIR].")(f)
    return f


def runs_option(f=None, *, default: str | None = "runs", help_text: str = RUNS_HELP):
    """--runs, the one option of every command that finds a run by name or takes the newest one."""
    def add(f):
        return click.option("--runs", "runs_root", default=default, show_default=default is not None,
                            type=click.Path(file_okay=False), help=help_text)(f)

    return add(f) if f is not None else add


def unsafe_option(f):
    """--unsafe, and the one warning every command gives when it is used."""
    def warn(ctx, param, value):
        if value:
            from cnntrain.views import console

            console.warn("--unsafe lets the model file run its own code")
        return value

    return click.option("--unsafe", is_flag=True, callback=warn,
                        help="Allow model files that contain code (Lambda layers, SavedModels). Only for files you "
                             "trust.")(f)


def picture_option(default: str, what: str = "The picture to write"):
    """--out for a picture: its suffix says the format, checked before any work is done."""
    def check(ctx, param, value):
        from cnntrain.figures import picture_format

        picture_format(value)
        return value

    return click.option("--out", type=click.Path(dir_okay=False), default=default, show_default=True,
                        callback=check, help=f"{what}: .png, .jpg, .webp, .tif, .pdf or .svg.")


def say_wrote(*paths, detail: str = "", err: bool = False) -> None:
    """Every command that writes files names them in one way: `wrote PATH [and PATH]`, each path (it
    may come from a file or a folder name) with its control characters shown as \\xNN."""
    from cnntrain.views import console

    text = f"wrote {' and '.join(printable(str(p)) for p in paths)}{detail}"
    click.echo(console.fitted(text, (console.err if err else console.out).size.width), err=err)


def say_error(error) -> None:
    """One of our errors as the user reads it, on stderr: `FILE:LINE:COL: message` or `error: message`."""
    from cnntrain.views import console

    console.error(str(error) if error.location else f"error: {error}")


def say_model(path) -> None:
    """Every command that picks a model file (perhaps the newest run's) says which one."""
    from cnntrain.views import console

    console.err.print(f"model: {console.escape(str(path))}")


def json_option(help_text: str):
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def tta_option(f):
    return click.option("--tta", type=click.Choice(TTA_CHOICES), default=None,
                        help="Test-time augmentation. flip: each image's class probabilities averaged with those "
                             "of its left-right mirror (helps CIFAR-10-like classes, not digits); flip_translate: "
                             "also of two copies shifted one pixel diagonally, six views in all; translate: no mirror, the "
                             "image and its four one-pixel shifts up, down, left and right (for digits). "
                             "Default: the fit.tta the model was trained with, else none.")(f)


def invert_option(f):
    return click.option("--invert", type=click.Choice(INVERT_CHOICES), default="auto", show_default=True,
                        help="Invert the image (auto: only for a grayscale model trained on one uniform "
                             "background, when the image's background is the opposite).")(f)

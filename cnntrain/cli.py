"""The command line's edge: the click group, and the one place a CnntrainError becomes a
message and an exit status. The commands are in cnntrain/commands/; they import TensorFlow
only when they run, so `--help` and spec errors answer at once."""
from __future__ import annotations

import os
import sys

import click

from cnntrain import __version__
from cnntrain.commands.options import say_error
from cnntrain.errors import CnntrainError, printable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class Group(click.Group):
    """Turns our error into `FILE:LINE:COL: message` + hint and its exit status; no traceback
    unless --debug. Doing it here, not around main(), keeps click's CliRunner on the same path."""

    def invoke(self, ctx):
        debug = "--debug" in sys.argv[1:] or bool(os.environ.get("CNNTRAIN_DEBUG"))
        _streamed_failure(None)   # forgets an earlier command's (tests run many in one process)
        try:
            try:
                return super().invoke(ctx)
            except Exception as exc:
                recorded = _streamed_failure(exc)
                if recorded is None or debug:
                    raise
                raise recorded from None
        except CnntrainError as exc:
            if debug:
                raise
            say_error(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug of ours: say so briefly; the traceback is one flag away
            if debug:
                raise
            text = printable(str(exc).strip().splitlines()[0][:300]) if str(exc).strip() else ""
            click.echo(f"internal error: {type(exc).__name__}: {text}\n  hint: run again with --debug for the "
                       "traceback, and report it", err=True)
            ctx.exit(70)


def _streamed_failure(exc: Exception | None) -> CnntrainError | None:
    """The error a read of images inside TensorFlow (rows.Lazy in tf.numpy_function) recorded, when
    `exc` is TensorFlow's report of that op's failure: TF's text is a Python traceback, ours names
    the file. None: forget any recorded one. Neither imports what the command did not."""
    rows = sys.modules.get("cnntrain.data.rows")
    if rows is None:
        return None
    if exc is None:
        rows.forget()
        return None
    tf = sys.modules.get("tensorflow")
    return rows.failure() if tf is not None and isinstance(exc, tf.errors.OpError) else None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnntrain")
@click.option("--debug", is_flag=True, help="Show Python tracebacks and TensorFlow's logs.")
def cli(debug):
    """Train CNN image classifiers from a YAML spec with Keras 3.

    \b
      cnntrain check configs/mnist.yaml     validate a spec and build its model
      cnntrain summary configs/mnist.yaml   the model, layer by layer
      cnntrain fit configs/mnist.yaml       train; writes runs/<name>/<time>/
      cnntrain evaluate                     test figures of the newest run
      cnntrain predict digit.png            classify image files
    """
    if debug:
        os.environ["CNNTRAIN_DEBUG"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        os.environ["CNNTRAIN_FULL_TRACEBACKS"] = "1"


def _register():
    # The commands live in cnntrain/commands/, one module per group of them; registering them
    # here keeps the imports one way (cli -> commands), with no cycle.
    from cnntrain.commands import assess, check, data, experiments, export, fit, insight

    for command in (check.check, check.summary, fit.fit, assess.evaluate, assess.predict, fit.runs_command,
                    data.data, data.augment, insight.filters, insight.activations, insight.explain,
                    export.export):
        cli.add_command(command)
    cli.add_command(experiments.card)
    cli.add_command(experiments.lr_find)
    cli.add_command(experiments.sweep)


_register()


def main():
    """The console script `cnntrain`: the click group under the name users type."""
    cli.main(prog_name="cnntrain")

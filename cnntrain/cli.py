"""The command line. The only module that knows click, and the only one that turns a
CnntrainError into a message and an exit status. TensorFlow is imported inside the
commands that need it, so `--help` and spec errors answer at once."""
from __future__ import annotations

import os
import sys

import click

from cnntrain import __version__
from cnntrain.errors import CnntrainError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SET_HELP = "Override a spec value, e.g. --set fit.epochs=3 (repeatable; the value is YAML)."


def _spec_options(f):
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(f)
    return f


def _data_options(f):
    f = click.option("--offline", is_flag=True, help="Never download: use only local files.")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False), envvar="CNNTRAIN_DATA_DIR",
                     help="Folder holding the dataset files [env: CNNTRAIN_DATA_DIR].")(f)
    return f


class Group(click.Group):
    """Turns our error into `FILE:LINE:COL: message` + hint and its exit status; no traceback
    unless --debug. Doing it here, not around main(), keeps click's CliRunner on the same path."""

    def invoke(self, ctx):
        debug = "--debug" in sys.argv[1:] or bool(os.environ.get("CNNTRAIN_DEBUG"))
        try:
            return super().invoke(ctx)
        except CnntrainError as exc:
            if debug:
                raise
            click.echo(str(exc) if exc.location else f"error: {exc}", err=True)
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
            text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            click.echo(f"internal error: {type(exc).__name__}: {text}\n  hint: run again with --debug for the "
                       "traceback, and report it", err=True)
            ctx.exit(70)


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


# ---------------------------------------------------------------- spec


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@_spec_options
def check(spec, overrides):
    """Validate SPEC and build its model; prints one OK line or the error."""
    from cnntrain.spec import load_spec

    loaded = load_spec(spec, overrides)
    model = _build(loaded)
    click.echo(f"OK {spec}: {loaded['name']}, {len(model.layers)} layers, {model.count_params():,} parameters")


def _build(spec):
    from cnntrain import builder

    return builder.build_all(spec)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@_spec_options
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def summary(spec, overrides, as_json):
    """The model of SPEC layer by layer: output shape, parameters (with the formula),
    kernel, stride, padding, receptive field and multiply-accumulates, with totals."""
    from cnntrain import builder, insight, ui
    from cnntrain.spec import load_spec

    loaded = load_spec(spec, overrides)
    model = _build(loaded)
    rows = insight.describe(model)
    totals = insight.totals(rows, train_images=builder.train_images(loaded))
    if as_json:
        import dataclasses
        import json

        click.echo(json.dumps({"layers": [dataclasses.asdict(r) for r in rows], "totals": totals}, indent=2))
        return
    ui.out.print(ui.model_table(rows, totals, f"{loaded['name']} ({spec})"))
    for r in rows:
        if r.formula or r.size_arithmetic:
            parts = [p for p in (r.formula and f"params {r.formula}", r.size_arithmetic and f"size {r.size_arithmetic}") if p]
            ui.out.print(f"  {ui.escape(r.name)}: " + "; ".join(parts))
    for warning in insight.warnings(model, rows):
        ui.err.print(f"warning: {ui.escape(warning)}", style="yellow")


# ---------------------------------------------------------------- fit


@cli.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@_spec_options
@click.option("--epochs", type=click.IntRange(min=1), help="Same as --set fit.epochs=N.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Same as --set fit.batch_size=N.")
@click.option("--seed", type=click.IntRange(min=0), help="Same as --set seed=N.")
@_data_options
@click.option("--out", type=click.Path(file_okay=False), help="Write the run to this folder instead of runs/<name>/<time>/.")
@click.option("--resume", is_flag=False, flag_value="latest", default=None, metavar="[RUN]",
              help="Continue an unfinished run (default: the newest one) from its last finished epoch.")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="Where to train.")
@click.option("--mixed-precision", is_flag=True, help="mixed_float16 on a GPU, mixed_bfloat16 on a CPU.")
@click.option("--jit", is_flag=True, help="Compile with XLA (often faster on a GPU, slower on a CPU).")
@click.option("--deterministic", is_flag=True, help="Turn on TensorFlow's op determinism: same seed, same history.")
@click.option("--strategy", type=click.Choice(["auto", "one-device", "mirrored", "multi-worker"]),
              help="tf.distribute strategy (default: the spec's fit.strategy, auto).")
@click.option("--devices", help="For mirrored: devices to use, e.g. gpu:0,gpu:1 (cpu:0,cpu:1 splits the CPU).")
@click.option("--workers", metavar="HOST:PORT,...", help="For multi-worker: every worker's address, the chief first "
              "(else TF_CONFIG is read).")
@click.option("--task-index", type=click.IntRange(min=0), help="For multi-worker: this worker's index in --workers.")
@click.option("--connect-timeout", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds the workers have to find each other.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final line.")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON on stdout, nothing else.")
def fit(spec, overrides, epochs, batch_size, seed, data_dir, offline, out, resume, device, mixed_precision, jit,
        deterministic, strategy, devices, workers, task_index, connect_timeout, quiet, as_json):
    """Train the model of SPEC and write a run folder: spec.yaml, model.keras, best.keras,
    history.csv, metrics.json, env.json, curves.png.

    A killed or interrupted fit continues with --resume (the SPEC may then be left out)."""
    from cnntrain import runs
    from cnntrain.spec import load_spec

    overrides = list(overrides)
    for key, value in (("fit.epochs", epochs), ("fit.batch_size", batch_size), ("seed", seed)):
        if value is not None:
            overrides.append(f"{key}={value}")
    run_dir = None
    if resume:
        run_dir = runs.resolve_run(None if resume == "latest" else resume, unfinished=True)
        if not (run_dir / runs.BACKUP).is_dir():
            raise CnntrainError("this run is finished; there is nothing to resume", file=str(run_dir),
                                hint="start a new fit, e.g. with --epochs to train longer")
        saved = load_spec(run_dir / "spec.yaml")
        if spec or overrides:
            wanted = load_spec(spec or run_dir / "spec.yaml", overrides)
            if wanted.to_yaml() != saved.to_yaml():
                import difflib

                diff = "".join(difflib.unified_diff(saved.to_yaml().splitlines(True), wanted.to_yaml().splitlines(True),
                                                    f"{run_dir}/spec.yaml", spec or "--set"))
                raise CnntrainError(f"the spec differs from the one this run was started with:\n{diff.rstrip()}",
                                    file=str(run_dir), hint="resume without changes, or start a new fit")
        loaded = saved
    else:
        if not spec:
            raise click.UsageError("Missing argument 'SPEC' (or use --resume).")
        loaded = load_spec(spec, overrides)
    from cnntrain import train, ui

    options = train.FitOptions(data_dir=data_dir, offline=offline, out=out, resume=str(run_dir) if run_dir else None,
                               device=device, mixed_precision=mixed_precision, jit=jit, deterministic=deterministic,
                               strategy=strategy, devices=tuple(d.strip() for d in (devices or "").split(",") if d.strip()),
                               workers=workers, task_index=task_index, connect_timeout=connect_timeout)
    train.fit(loaded, options, ui.Reporter(ui.choose_mode(quiet, as_json)))


@cli.command("runs")
@click.option("--dir", "root", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Where the run folders are.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def runs_command(root, as_json):
    """The runs under --dir with their key figures, newest first."""
    from cnntrain.runlist import run_rows, runs_table
    from cnntrain import ui

    rows = run_rows(root)
    if as_json:
        import json

        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        ui.err.print(f"no runs under {ui.escape(root)}/ yet: train one with 'cnntrain fit SPEC'")
    else:
        ui.out.print(runs_table(rows))


def main():
    cli.main(prog_name="cnntrain")


from cnntrain import commands  # noqa: E402,F401  evaluate, predict, data, insight commands

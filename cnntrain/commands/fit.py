"""`cnntrain fit` and `cnntrain runs`: training into a run folder, and the table of runs."""
from __future__ import annotations

import click

from cnntrain.commands.options import (data_options, json_option, picture_option, runs_option, spec_options,
                                       trust_option)
from cnntrain.errors import CnntrainError, plural
from cnntrain.spec.schema import DEVICES, STRATEGIES


@click.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@spec_options
@trust_option
@click.option("--epochs", type=click.IntRange(min=1), help="Same as --set fit.epochs=N.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Same as --set fit.batch_size=N.")
@click.option("--seed", type=click.IntRange(min=0), help="Same as --set seed=N.")
@data_options
@click.option("--out", type=click.Path(file_okay=False), help="Write the run to this folder instead of "
              "runs/<name>/<time>/: a new or empty folder (made for you), never one holding other files.")
@click.option("--resume", is_flag=False, flag_value="latest", default=None, metavar="[RUN]",
              help="Continue an unfinished run (default: the newest one) from its last finished epoch; "
                   "with --epochs N, train a finished RUN longer, to N epochs in all.")
@click.option("--init-from", metavar="RUN | MODEL.keras",
              help="Start a new run from the weights of a trained model with the same layers.")
@runs_option(default=None, help_text="Where --resume and --init-from find a run by name, or the newest one "
             "(default: the spec's output.dir, else runs).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Where to train.")
@click.option("--mixed-precision", is_flag=True,
              help="fit.precision: mixed: mixed_float16 on a GPU, mixed_bfloat16 on a CPU.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="Threads one TensorFlow op may use (default: one per core).")
@click.option("--jit", is_flag=True, help="Compile with XLA (often faster on a GPU, slower on a CPU).")
@click.option("--deterministic", is_flag=True, help="Turn on TensorFlow's op determinism: same seed, same history.")
@click.option("--strategy", type=click.Choice(STRATEGIES),
              help="tf.distribute strategy (default: the spec's fit.strategy, auto).")
@click.option("--devices", help="For mirrored: devices to use, e.g. gpu:0,gpu:1 (cpu:0,cpu:1 splits the CPU).")
@click.option("--workers", metavar="HOST:PORT,...", help="For multi-worker: every worker's address, the chief first "
              "(else TF_CONFIG is read).")
@click.option("--task-index", type=click.IntRange(min=0), help="For multi-worker: this worker's index in --workers.")
@click.option("--connect-timeout", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds the workers have to find each other.")
@click.option("--tensorboard", is_flag=True,
              help="Log to <run>/tensorboard for TensorBoard; same as --set fit.tensorboard=true.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final line.")
@json_option("Print the final metrics as JSON on stdout, nothing else.")
def fit(spec, overrides, trust_spec, epochs, batch_size, seed, data_dir, offline, out, resume, init_from, runs_root,
        device, mixed_precision, threads, jit, deterministic, strategy, devices, workers, task_index, connect_timeout,
        tensorboard, quiet, as_json):
    """Train the model of SPEC and write a run folder: spec.yaml, model.keras, best.keras,
    history.csv, metrics.json, env.json, curves.png.

    A killed or interrupted fit continues with --resume (the SPEC may then be left out);
    --resume RUN --epochs N trains a finished run longer, its schedule going on from where it was."""
    from cnntrain.spec import load_spec

    overrides = list(overrides)
    for key, value in (("fit.epochs", epochs), ("fit.batch_size", batch_size), ("seed", seed),
                       ("fit.tensorboard", "true" if tensorboard else None)):
        if value is not None:
            overrides.append(f"{key}={value}")
    run_dir, extend = None, False
    if resume and init_from:
        raise click.UsageError("give --resume or --init-from, not both")
    if resume:
        run_dir, loaded, extend = _resumed(resume, spec, overrides, runs_root)
    else:
        if not spec:
            raise click.UsageError("Missing argument 'SPEC' (or use --resume).")
        loaded = load_spec(spec, overrides)
    loaded.trusted = trust_spec
    from cnntrain.train import fit as training
    from cnntrain.views import console, reporter

    options = training.FitOptions(data_dir=data_dir, offline=offline, out=out, resume=str(run_dir) if run_dir else None,
                                  extend=extend, init_from=init_from, runs_root=runs_root,
                                  device=device, mixed_precision=mixed_precision, threads=threads, jit=jit,
                                  deterministic=deterministic,
                                  strategy=strategy, devices=tuple(d.strip() for d in (devices or "").split(",") if d.strip()),
                                  workers=workers, task_index=task_index, connect_timeout=connect_timeout)
    training.fit(loaded, options, reporter.Reporter(console.choose_mode(quiet, as_json)))


def _resumed(resume, spec, overrides, runs_root):
    """(run folder, spec, whether the run is finished and is to be trained longer). Only fit.epochs may
    change: a resumed run is the same training, continued."""
    from cnntrain.runs import folder
    from cnntrain.runs.history import read_history
    from cnntrain.spec import load_spec

    root = runs_root or (load_spec(spec, overrides)["output"]["dir"] if spec else "runs")
    run_dir = folder.resolve_run(None if resume == "latest" else resume, root, unfinished=True)
    saved = load_spec(run_dir / "spec.yaml")
    wanted = load_spec(spec or run_dir / "spec.yaml", overrides) if spec or overrides else saved
    epochs = wanted["fit"]["epochs"]
    same_length = load_spec(spec or run_dir / "spec.yaml", [*overrides, f"fit.epochs={saved['fit']['epochs']}"]) \
        if spec or overrides else saved
    if same_length.to_yaml() != saved.to_yaml():
        import difflib

        diff = "".join(difflib.unified_diff(saved.to_yaml().splitlines(True), wanted.to_yaml().splitlines(True),
                                            f"{run_dir}/spec.yaml", spec or "--set"))
        raise CnntrainError(f"the spec differs from the one this run was started with:\n{diff.rstrip()}",
                            file=str(run_dir), hint="resume without changes (--epochs may change), or start a new fit")
    if (run_dir / folder.BACKUP).is_dir():
        return run_dir, wanted, False
    done = len(read_history(run_dir / "history.csv"))
    hint = f"to train it longer, give the number of epochs in all, e.g. 'cnntrain fit --resume {run_dir} --epochs {2 * done}'"
    asked = epochs != saved["fit"]["epochs"] or any(o.startswith("fit.epochs=") for o in overrides)
    if not asked:  # an early-stopped run is finished too: only an explicit --epochs trains it on
        raise CnntrainError(f"this run is finished after {plural(done, 'epoch')}; there is nothing to resume",
                            file=str(run_dir), hint=hint)
    if epochs <= done:
        raise CnntrainError(f"this run is finished after {plural(done, 'epoch')}; --epochs {epochs} would not "
                            "train it longer", file=str(run_dir), hint=hint)
    return run_dir, wanted, True


@click.command("runs")
@click.argument("compared", nargs=-1, metavar="[RUN RUN...]")
@runs_option
@click.option("--compare", is_flag=True, help="Compare the RUNs given: spec differences, key figures side by "
              "side, and their curves overlaid in one PNG (--out).")
@picture_option("compare.png", "With --compare: the runs' curves overlaid")
@json_option("Print the table as JSON.")
def runs_command(compared, runs_root, compare, out, as_json):
    """The runs under --runs with their key figures, newest first; a run whose files were damaged is
    listed as damaged, with what is wrong. With --compare, the RUNs given side by side."""
    from cnntrain.runs.listing import run_rows
    from cnntrain.views import console, tables

    if compared and not compare:
        raise click.UsageError("to compare runs, add --compare: cnntrain runs --compare RUN RUN...")
    if compare:
        from cnntrain.commands.experiments import compare as compare_runs

        return compare_runs(compared, runs_root, out, as_json)
    rows = run_rows(runs_root)
    if as_json:
        import json

        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        console.err.print(f"no runs under {console.escape(runs_root)}/ yet: train one with 'cnntrain fit SPEC'")
    else:
        console.out.print(tables.runs_table(rows, width=console.out.width))
        for problem in (p for row in rows for p in row["problems"]):
            console.warn(problem)
    if not as_json:
        from cnntrain.runs.listing import leaderboards
        from cnntrain.views.experiments import show_leaderboards

        boards, problems = leaderboards(runs_root)
        for problem in problems:
            console.warn(problem)
        show_leaderboards(boards)

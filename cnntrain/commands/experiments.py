"""`cnntrain card`, `cnntrain lr-find` and `cnntrain sweep`; `runs --compare` is in commands/fit.py's runs."""
from __future__ import annotations

import json

import click

from cnntrain.spec.schema import DEVICES

from cnntrain.commands.options import data_options, json_option, picture_option, runs_option, say_wrote, spec_options


def compare(runs, runs_root, out, as_json):
    """`cnntrain runs --compare RUN RUN...`: called by the runs command."""
    from cnntrain.experiments.compare import compare_runs
    from cnntrain.views import experiments

    result = compare_runs(list(runs), runs_root=runs_root, out=out)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    experiments.show_compare(result)
    if result["overlay"]:
        say_wrote(result["overlay"], err=True)


@click.command()
@click.argument("run", required=False)
@runs_option
@data_options
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write the card (default: RUN/MODEL_CARD.md).")
def card(run, runs_root, data_dir, offline, out):
    """Write MODEL_CARD.md for RUN (default: the newest run): the model, the training data with
    its checksums and split sizes, the training procedure and environment, the evaluation (per
    class, the most confused pairs; run 'cnntrain evaluate' first) and the pictures.

    The data is read again for its checksums and split sizes, never downloaded."""
    from cnntrain.experiments.card import write_card

    say_wrote(write_card(run, runs_root=runs_root, data_dir=data_dir, out=out))


@click.command("lr-find")
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@data_options
@click.option("--start", type=click.FloatRange(min=0, min_open=True), default=1e-7, show_default=True,
              help="The first learning rate.")
@click.option("--end", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="The last learning rate.")
@click.option("--steps", type=click.IntRange(min=3), default=200, show_default=True,
              help="Training steps over which the rate rises exponentially.")
@picture_option("lr-find.png", "The picture of loss against learning rate")
@json_option("Print the result as JSON.")
def lr_find(spec, overrides, data_dir, offline, start, end, steps, out, as_json):
    """The learning-rate range test: train SPEC's model on its training split while the
    learning rate rises exponentially from --start to --end, until the loss explodes; draw the
    loss against the rate and print the suggested rate as the --set line that applies it.

    Nothing is saved but the picture."""
    from cnntrain.spec import load_spec

    loaded = load_spec(spec, overrides)
    from cnntrain.experiments.lrfind import lr_find as range_test
    from cnntrain.figures.lrfind import lr_find_png
    from cnntrain.views import console, experiments

    result = range_test(loaded, data_dir=data_dir, offline=offline, start=start, end=end, steps=steps)
    png = lr_find_png(result, out, title=f"{loaded['name']}: learning-rate range test")
    if as_json:
        click.echo(json.dumps({**result, "png": str(png)}, indent=2))
        return
    for line in experiments.lr_find_lines(result, png):
        console.out.print(console.escape(line))
    say_wrote(png, err=True)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option("--search", "search_file", required=True, type=click.Path(dir_okay=False),
              help="The search file: spec paths (as --set takes them) with ranges or choices; sampler, pruner.")
@click.option("--trials", type=click.IntRange(min=1), default=10, show_default=True,
              help="Trials in the study in all (a resumed sweep runs only those still missing).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="MIN",
              help="Start no new trial after MIN minutes (the running one finishes).")
@data_options
@click.option("--out", type=click.Path(file_okay=False), help="The sweep folder (default: <output.dir>/<name>-sweep/).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress, only a line per trial and the leaderboard.")
@json_option("Print the leaderboard as JSON on stdout, nothing else.")
def sweep(spec, overrides, search_file, trials, timeout, data_dir, offline, out, device, quiet, as_json):
    """Search SPEC's settings with Optuna: each trial is an ordinary run folder under the sweep
    folder, with its overrides as --set texts; unpromising trials are pruned after an epoch.

    The study is stored in the sweep folder (study.db, SQLite): a killed sweep resumes with the
    same command and never runs a finished trial again. At the end: the leaderboard, and
    best.yaml, the best trial's spec."""
    from cnntrain.experiments.search import load_search

    search = load_search(search_file, spec, overrides)
    from cnntrain.experiments.sweep import Sweep
    from cnntrain.train.fit import FitOptions
    from cnntrain.views import console, experiments

    mode = console.choose_mode(quiet, as_json)

    def on_trial(row):
        if not as_json:
            console.err.print(console.escape(experiments.trial_line(row)))

    runner = Sweep(spec, overrides, search, out=out, options=FitOptions(data_dir=data_dir, offline=offline, device=device),
                   reporter_factory=lambda: experiments.trial_reporter(mode if mode != "json" else "quiet"),
                   on_trial=on_trial)
    result = runner.run(trials, timeout)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from cnntrain.runs.contents import optional_json

    for line in experiments.leaderboard_lines(optional_json(runner.dir / "leaderboard.json"), runner.dir):
        console.out.print(console.escape(line))
    if result["done"] < result["wanted"]:
        console.err.print(f"stopped by --timeout after {result['done']} of {result['wanted']} trials; the same "
                          "command goes on with the rest")

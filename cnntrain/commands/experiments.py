"""`cnntrain card`, `cnntrain lr-find` and `cnntrain sweep`; `runs --compare` is in commands/fit.py's runs."""
from __future__ import annotations

import json

import click

from cnntrain.commands.options import data_options, json_option, runs_option


def compare(runs, runs_root, out, as_json):
    """`cnntrain runs --compare RUN RUN...`: called by the runs command."""
    from cnntrain.experiments.compare import compare_runs
    from cnntrain.views import console, experiments

    result = compare_runs(list(runs), runs_root=runs_root, out=out)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    experiments.show_compare(result)
    if result["overlay"]:
        console.err.print(f"wrote {console.escape(result['overlay'])}")


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

    click.echo(f"wrote {write_card(run, runs_root=runs_root, data_dir=data_dir, out=out)}")

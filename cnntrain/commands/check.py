"""`cnntrain check` and `cnntrain summary`: a spec, validated and built, and its layer arithmetic."""
from __future__ import annotations

import click

from cnntrain.commands.options import spec_options, trust_option


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@trust_option
def check(spec, overrides, trust_spec):
    """Validate SPEC, build its model, optimizer, schedule, loss, metrics and callbacks, and run one
    training step on random images of its input shape (no data is read); prints one OK line or the
    error. Without --trust-spec, what fit would refuse is refused here too."""
    from cnntrain.spec import layer_entries, load_spec

    loaded = load_spec(spec, overrides)   # first: a broken spec is reported before TensorFlow is imported
    from cnntrain.data import splits
    from cnntrain.model import backbones
    from cnntrain.model.build import output_warning
    from cnntrain.train import preflight
    from cnntrain.views import console

    loaded.trusted = trust_spec
    model = _build(loaded)
    logged = preflight.preflight(loaded)
    preflight.check_monitors(loaded, logged, validation=loaded["data"]["validation"] != "none")
    warning = output_warning(loaded, model)
    if warning is not None:
        click.echo(f"{warning.location}: warning: {warning.message}\n  hint: {warning.hint}", err=True)
    steps = splits.train_steps(loaded)   # unknown for an image folder, whose fit warns instead
    for unsettled in backbones.unsettled_statistics(loaded, model, steps) if steps else []:
        console.warn(unsettled)
    # The spec's layers: the front normalization layer fit adds is not one the user wrote.
    written = sum(1 for _ in layer_entries(loaded["model"]["layers"]))
    click.echo(f"OK {spec}: {loaded['name']}, {written} layers, {model.count_params():,} parameters")


def _build(spec):
    from cnntrain.model import build

    return build.build_all(spec)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@trust_option
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def summary(spec, overrides, trust_spec, as_json):
    """The model of SPEC layer by layer: output shape, parameters (with the formula),
    kernel, stride, padding, receptive field and multiply-accumulates, with totals."""
    from cnntrain.spec import load_spec

    loaded = load_spec(spec, overrides)   # first: a broken spec is reported before TensorFlow is imported
    from cnntrain.data import splits
    from cnntrain.insight import layers
    from cnntrain.views import console, tables

    loaded.trusted = trust_spec
    model = _build(loaded)
    rows = layers.describe(model)
    totals = layers.totals(rows, train_images=splits.train_images(loaded))
    if as_json:
        import dataclasses
        import json

        click.echo(json.dumps({"layers": [dataclasses.asdict(r) for r in rows], "totals": totals}, indent=2))
        return
    console.out.print(tables.model_table(rows, totals, f"{loaded['name']} ({spec})", width=console.out.width))
    for r in rows:
        if r.formula or r.size_arithmetic:
            parts = [p for p in (r.formula and f"params {r.formula}", r.size_arithmetic and f"size {r.size_arithmetic}") if p]
            console.out.print(f"  {console.escape(r.name)}: " + "; ".join(parts))
    for warning in layers.warnings(model, rows):
        console.warn(warning)

"""`cnntrain data` and `cnntrain augment`: where the datasets are, and what augmentation does to them."""
from __future__ import annotations

import json

import click

from cnntrain.commands.options import data_options, json_option, picture_option, say_wrote, spec_options
from cnntrain.errors import plural, printable


@click.command()
@click.argument("action", type=click.Choice(["list", "verify", "cache"]), default="list")
@click.argument("name", required=False)
@click.option("--path", help="A dataset file or folder (as data.path in a spec).")
@data_options
@json_option("Print verify's report as JSON (counts per class, checksums, skipped files, warnings).")
def data(action, name, path, data_dir, offline, as_json):
    """Where each dataset is found (list), or load one and check its shapes, counts and
    checksums (verify NAME), or a spec's data as fit reads it (verify SPEC: its image_size,
    color_mode, resize, labels and on_broken apply), with the images per class and warnings
    for a heavy class imbalance and for classes too small for the validation split.

    cache: the decoded-image cache ($CNNTRAIN_CACHE_DIR, else ~/.cache/cnntrain) and its
    entries; 'cache clear' removes them all."""
    from cnntrain import data as datasets
    from cnntrain.views import console, tables

    if action == "cache":
        _cache(name)
        return

    if action == "list":
        rows = [(dataset, str(location), exists)
                for dataset in ([name] if name else [d for d in datasets.DATASETS if d != "image_folder"])
                for location, exists in datasets.find_dataset(dataset, path=path, data_dir=data_dir)]
        console.out.print(tables.datasets_table(rows))
        return
    if not name:
        raise click.UsageError("verify needs a dataset name or a spec, e.g. 'cnntrain data verify mnist'")
    if name not in datasets.DATASETS and name.lower().endswith((".yaml", ".yml")):
        _verify_spec(name, data_dir, offline, as_json)
        return
    _say_report(datasets.verify_dataset(name, path=path, data_dir=data_dir, offline=offline), as_json)


# Unreadable files named one per line before the rest are counted.
SKIPPED_SHOWN = 20


def _say_report(report: dict, as_json: bool) -> None:
    from cnntrain.views import console, tables

    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    console.out.print(tables.verify_table(report))
    for file, digest in report["sha256"].items():
        check = report["published"].get(file)
        verdict = "" if check is None else (" (the published checksum)" if check["match"] else
                                             f" (NOT the published {check['algorithm']} {check['expected']}: "
                                             "a file built by hand differs)")
        click.echo(console.fitted(f"sha256 {digest}  {printable(file)}{verdict}", console.out.size.width))
    skipped = report["skipped"]
    if skipped:
        more = len(skipped) - SKIPPED_SHOWN
        click.echo(console.fitted(f"skipped {plural(len(skipped), 'unreadable image')} (data.on_broken: skip):",
                                  console.out.size.width))
        for file in skipped[:SKIPPED_SHOWN]:
            click.echo(f"  {printable(file)}")
        if more > 0:
            click.echo(f"  and {more:,} more (--json lists them all)")


def _cache(what):
    from cnntrain.data import cache
    from cnntrain.views import console, tables

    if what not in (None, "clear"):
        raise click.UsageError(f"'data cache' takes nothing or 'clear', received: {what!r}")
    if what == "clear":
        removed, freed = cache.clear()
        click.echo(f"removed {removed:,} cache entr{'y' if removed == 1 else 'ies'} ({freed / 1e6:,.1f} MB) "
                   f"from {cache.root()}")
        return
    rows = cache.entries()
    console.out.print(tables.cache_table(cache.root(), rows))


def _verify_spec(file, data_dir, offline, as_json):
    from cnntrain import data as datasets
    from cnntrain.data import balance
    from cnntrain.spec import load_spec
    from cnntrain.views import console

    d = load_spec(file)["data"]
    report = datasets.verify_dataset(d["dataset"], path=d["path"], data_dir=data_dir, offline=offline,
                                     **datasets.image_options(d))
    report["warnings"] = balance.warnings(report["per_class_train"], d["validation"], d["validation_split"])
    _say_report(report, as_json)
    for warning in report["warnings"]:
        console.warn(warning)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@data_options
@picture_option("augment.png")
@click.option("--images", type=click.IntRange(1, 16), default=6, show_default=True, help="Training images shown.")
@click.option("--versions", type=click.IntRange(1, 16), default=7, show_default=True, help="Augmented versions of each.")
def augment(spec, overrides, data_dir, offline, out, images, versions):
    """A picture of a few training images and augmented versions of each, as the spec's
    augment section makes them during fit."""
    from cnntrain.spec import load_spec, mix_entries

    loaded = load_spec(spec, overrides)   # first: a broken spec is reported before TensorFlow is imported
    from cnntrain.insight.augment_grid import augment_grid

    path, mixed = augment_grid(loaded, out, data_dir=data_dir, offline=offline, images=images, versions=versions)
    say_wrote(path)
    mixes = mix_entries(loaded["augment"])
    if mixes:
        drawn = ", ".join(f"{name} (probability {probability:g})" for _, name, probability in mixes)
        from cnntrain.views import console

        console.err.print(f"note: {drawn} mixed {mixed} of the {versions} versions, the shown images being the "
                          "batch; a mixed image's label shares are written under it")

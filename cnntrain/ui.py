"""What the user sees: results on stdout, messages and progress on stderr.

Modes: `rich` (a terminal: live progress bar), `plain` (not a terminal, e.g. CI logs:
one line per epoch), `quiet` (only the final line), `json` (one JSON object on stdout).
"""
from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def choose_mode(quiet: bool, as_json: bool) -> str:
    if as_json:
        return "json"
    if quiet:
        return "quiet"
    return "rich" if err.is_terminal else "plain"


class Reporter:
    def __init__(self, mode: str = "plain"):
        self.mode = mode

    def note(self, text: str):
        if self.mode in ("rich", "plain"):
            err.print(escape(text), style="dim" if self.mode == "rich" else None)

    def warn(self, text: str):
        if self.mode != "json":
            err.print(f"warning: {escape(text)}", style="yellow")

    def callback(self, steps: int, epochs: int):
        from cnntrain.progress import progress_callback

        return progress_callback(self.mode, steps, epochs)

    def summary(self, metrics: dict, run_dir):
        if self.mode == "json":
            print(json.dumps({**metrics, "run": str(run_dir)}, indent=2))
            return
        test = metrics.get("test") or {}
        line = (f"{metrics['name']}: {metrics['epochs']} epochs in {metrics['wall_time_s']:.0f} s"
                f", test accuracy {fmt(test.get('accuracy'))}" if test else
                f"{metrics['name']}: {metrics['epochs']} epochs in {metrics['wall_time_s']:.0f} s")
        if self.mode == "quiet":
            out.print(f"{escape(line)}  ->  {escape(str(run_dir))}")
            return
        table = Table(title=f"{escape(metrics['name'])}: {metrics['epochs']} epochs ({metrics['stopped']})")
        table.add_column("split")
        table.add_column("loss", justify="right")
        table.add_column("accuracy", justify="right")
        for split in ("train", "validation", "test"):
            figures = metrics.get(split) or {}
            if figures:
                table.add_row(split, fmt(figures.get("loss")), fmt(figures.get("accuracy")))
        out.print(table)
        best = metrics["best"]
        out.print(f"best {best['monitor']} {fmt(best['value'])} at epoch {best['epoch']}; "
                  f"{metrics['wall_time_s']:.1f} s, {metrics['train_images_per_s'] or 0:,.0f} images/s; "
                  f"{metrics['parameters']:,} parameters")
        out.print(f"run folder: {escape(str(run_dir))}")


def model_table(rows, totals: dict, title: str) -> Table:
    table = Table(title=escape(title))
    for name, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("params", "right"),
                          ("kernel", "left"), ("stride", "left"), ("padding", "left"),
                          ("receptive field", "left"), ("MACs", "right")):
        table.add_column(name, justify=justify)
    for r in rows:
        table.add_row(escape(r.name), r.type, str(tuple(r.output_shape)),
                      f"{r.params:,}", r.kernel, r.stride, r.padding, r.receptive_field_text or "",
                      f"{r.macs:,}" if r.macs else "")
    table.caption = (f"total {totals['params']:,} parameters ({totals['trainable']:,} trainable, "
                     f"{totals['non_trainable']:,} non-trainable); {totals['macs_per_image']:,} MACs per image")
    if totals.get("train_flops_per_epoch"):
        table.caption += f"; about {totals['train_flops_per_epoch'] / 1e12:.2f} TFLOPs to train one epoch"
    return table

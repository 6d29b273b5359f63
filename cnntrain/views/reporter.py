"""The Reporter: how training talks to the user, in one of four modes.

The contract between cnntrain.train and the views: `fit` calls `note(text)` for progress
notes, `warn(text)` for warnings, `callback(steps, epochs)` once for the Keras callback that
shows live progress, and `summary(metrics, run_dir)` once at the end. Training never prints.
Modes: `rich` (a terminal: live progress bar), `plain` (not a terminal, e.g. CI logs: one line
per epoch), `quiet` (only the final line), `json` (one JSON object on stdout, nothing else).
"""
from __future__ import annotations

import json

from rich.table import Table

from cnntrain.views.console import err, escape, fmt, out


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
        from cnntrain.views.progress import progress_callback  # imports Keras: only when training

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

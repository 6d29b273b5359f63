"""The Reporter: how training talks to the user, in one of four modes.

The contract between cnntrain.train and the views: `fit` calls `note(text)` for progress
notes, `warn(text)` for warnings, `decoding()` for what hears an image folder's first decode,
`callback(steps, epochs)` once for the Keras callback that shows live progress, and
`summary(metrics, run_dir)` once at the end; on a multi-worker fit's other workers, `worker()`
for the reporter to use instead. Training never prints.
Modes: `rich` (a terminal: live progress bar), `plain` (not a terminal, e.g. CI logs: one line
per epoch), `quiet` (only the final line), `json` (one JSON object on stdout, nothing else).
"""
from __future__ import annotations

import json

from cnntrain.assess.tta import label
from cnntrain.errors import plural
from cnntrain.runs.numbers import figure, fmt, pct
from cnntrain.views import console
from cnntrain.views.console import escape, out
from cnntrain.views.tables import FoldingTable


class Reporter:
    """The training side's only way to the user (see the module docstring for the contract)."""
    def __init__(self, mode: str = "plain", *, summary: bool = True):
        self.mode = mode
        self.shows_summary = summary   # False: the caller prints its own (a sweep's line per trial)

    def worker(self) -> Reporter:
        """The reporter of a multi-worker fit's other workers: warnings only, the chief tells the rest."""
        return Reporter("json" if self.mode == "json" else "quiet", summary=False)

    def note(self, text: str):
        if self.mode in ("rich", "plain"):
            console.note(text, style="dim" if self.mode == "rich" else None)

    def warn(self, text: str):
        if self.mode != "json":
            console.warn(text)

    def decoding(self):
        """What hears the first decode of an image folder (data.load_dataset's progress), or None."""
        if self.mode not in ("rich", "plain"):
            return None
        from cnntrain.views.decoding import DecodeProgress

        return DecodeProgress(live=self.mode == "rich")

    def callback(self, steps: int, epochs: int):
        from cnntrain.views.progress import progress_callback  # imports Keras: only when training

        return progress_callback(self.mode, steps, epochs)

    def summary(self, metrics: dict, run_dir):
        if not self.shows_summary:
            return
        if self.mode == "json":
            print(json.dumps({**metrics, "run": str(run_dir)}, indent=2))
            return
        test = metrics.get("test") or {}
        images = metrics.get("images") or {}
        line = f"{metrics['name']}: {plural(metrics['epochs'], 'epoch')} in {metrics['wall_time_s']:.0f} s"
        if test:
            line += f", test accuracy {pct(test.get('accuracy'))}"
            if images.get("test"):
                line += f" on {plural(images['test'], 'image')}"
            line += label(test.get("tta", "none"))
        if self.mode == "quiet":
            out.print(f"{escape(line)}  ->  {escape(str(run_dir))}")
            return
        table = FoldingTable(title=f"{escape(metrics['name'])}: {plural(metrics['epochs'], 'epoch')} "
                                   f"({metrics['stopped']})")
        table.add_column("split")
        table.add_column("images", justify="right")
        table.add_column("loss", justify="right")
        table.add_column("accuracy", justify="right")
        for split in ("train", "validation", "test"):
            figures = metrics.get(split) or {}
            if figures:
                count = images.get(split)
                shown = f"{split}{label(figures['tta'])}" if figures.get("tta") else split
                table.add_row(shown, "-" if count is None else f"{count:,}", fmt(figures.get("loss")),
                              pct(figures.get("accuracy")))
        out.print(table)
        best = metrics["best"]
        out.print(f"best {best['monitor']} {figure(best['monitor'], best['value'])} at epoch {best['epoch']}; "
                  f"{metrics['wall_time_s']:.1f} s, {metrics['train_images_per_s'] or 0:,.0f} images/s; "
                  f"{metrics['parameters']:,} parameters")
        out.print(f"run folder: {escape(str(run_dir))}")

"""The first decode of an image folder, as the user sees it: a live bar on a terminal (images,
images/s, time left), one line when it ends, on a terminal or piped. The decoder calls advance()
from its threads; rich's Progress takes its own lock."""
from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cnntrain.data.decode import workers
from cnntrain.errors import plural
from cnntrain.views import console
from cnntrain.views.console import err


class DecodeProgress:
    """data.load_dataset's `progress`: start(total), advance(count), done()."""

    def __init__(self, live: bool):
        self.live, self.bar, self.total, self.count = live, None, 0, 0

    def start(self, total: int) -> None:
        self.total, self.count, self.started = total, 0, time.perf_counter()
        if self.live:
            self.bar = Progress(TextColumn("decoding"), BarColumn(bar_width=None),
                                TextColumn("{task.completed:,}/{task.total:,}"),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                console=err, transient=True)
            self.task = self.bar.add_task("decode", total=total, rate="")
            self.bar.start()

    def advance(self, count: int) -> None:
        self.count += count   # the decoding threads' += under the GIL: a shown figure, not a sum kept
        if self.bar is not None:
            self.bar.update(self.task, advance=count, rate=f"{self._rate():,.0f} images/s")

    def _rate(self) -> float:
        return self.count / max(time.perf_counter() - self.started, 1e-9)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        seconds = time.perf_counter() - self.started
        text = (f"decoded {plural(self.total, 'image')} in {seconds:.1f} s ({self._rate():,.0f} images/s "
                f"on {plural(workers(), 'core')})")
        console.note(text, style="dim" if self.live else None)

    def __del__(self):
        # An error mid-decode never reaches done(): the bar must not keep the terminal.
        if self.bar is not None:
            try:
                self.bar.stop()
            except Exception:
                pass

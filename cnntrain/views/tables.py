"""Every rich table: the model summary, evaluations, predictions and the runs list.

Every name that comes from data (class names, file names) is escaped before it
reaches rich, so a '[' in a name is printed as is and never read as markup.
"""
from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table
from rich.text import Text

from cnntrain.assess.tta import label
from cnntrain.errors import plural
from cnntrain.runs.numbers import pct
from cnntrain.views.console import UNBOUNDED, escape, fitted


class FoldingTable(Table):
    """A Table that folds a cell that does not fit its column onto the next line, never cutting it
    to 'recep…' or '147,5…'. Numbers (the right-justified columns) are the last to be narrowed."""

    def add_column(self, header="", *, justify="left", overflow="fold", no_wrap=None, **kwargs):
        super().add_column(header, justify=justify, overflow=overflow,
                           no_wrap=justify == "right" if no_wrap is None else no_wrap, **kwargs)

    def __rich_console__(self, console, options):
        # Our consoles leave wrapping to the terminal (soft_wrap), which would break a title or
        # caption longer than the terminal anywhere, mid-word: they are folded between words first.
        kept = self.title, self.caption
        self.title, self.caption = (fitted(text, options.max_width) if isinstance(text, str) else text
                                    for text in kept)
        try:
            yield from super().__rich_console__(console, options)
        finally:
            self.title, self.caption = kept


# Past this many classes a confusion matrix no longer fits a terminal (or a figure's
# cells their numbers): the table points at confusion.png, the figure drops the counts.
MAX_TABLE_CLASSES = 20


# ---------------------------------------------------------------- the model


# What the model table leaves out first on a narrow terminal: the per-layer lines under the table
# and --json keep the arithmetic, and folding every name in two reads worse than fewer columns.
OPTIONAL_MODEL_COLUMNS = ("padding", "stride", "kernel", "receptive field")


def model_table(rows, totals: dict, title: str, width: int | None = None) -> Table:
    """The table of `cnntrain summary`, layer by layer, with the totals as caption."""
    table = FoldingTable(title=escape(title))
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
    if width is not None:
        _drop_to_fit(table, width, OPTIONAL_MODEL_COLUMNS)
    return table


def _drop_to_fit(table: Table, width: int, optional, folded=()) -> None:
    """Leave out `optional` columns, in order, until `table` fits `width` unfolded, then `folded` ones
    until it fits at all with its unbreakable cells whole (a run id); the caption says which."""
    from rich.console import Console

    unbounded = Console(width=UNBOUNDED)  # rich caps a measurement at its console's width
    dropped = []
    for names, fits in ((optional, lambda: unbounded.measure(table).maximum <= width),
                        (folded, lambda: _rendered_width(table, width) <= width)):
        for name in names:
            if fits():
                break
            table.columns.pop([column.header for column in table.columns].index(name))
            dropped.append(name)
    if dropped:
        table.caption += f" ({', '.join(dropped)}: left out to fit the terminal; --json shows them)"


# The narrowest a column that folds anywhere (a runners-up list) is let get beside cells kept whole.
FOLDED_WIDTH = 10


def _keep_whole(table: Table, width: int, choices) -> None:
    """Keep the cells of the first of `choices` (lists of columns, best first) whole that fits `width`,
    the other columns folded between words if they can, else anywhere down to FOLDED_WIDTH: rich's
    own narrowing folds the widest foldable column first, whatever it holds (a file name mid-name).
    Every column is held at least as wide as asked (min_width), so a choice that does not fit draws
    wider than `width`, which _rendered_width sees (rich would cut a no_wrap cell instead)."""
    def widest(column, words: bool) -> int:
        texts = [Text.from_markup(cell).plain for cell in column.cells] + [Text.from_markup(column.header).plain]
        return max(len(part) for text in texts for part in (text.split() if words else [text]) or [""])

    for whole in choices:
        for floor in (None, FOLDED_WIDTH):
            for column in table.columns:
                kept = column in whole or column.justify == "right"
                word = widest(column, words=not kept)
                column.min_width = word if kept or floor is None else min(word, floor)
                column.no_wrap = kept
            if _rendered_width(table, width) <= width:
                return
    for column in table.columns:
        column.min_width, column.no_wrap = None, column.justify == "right"


def _rendered_width(table: Table, width: int) -> int:
    """The widest line of `table` drawn `width` columns wide: wider when its unbreakable cells do not fit."""
    import io

    from rich.console import Console

    drawn = Console(width=width, file=io.StringIO(), color_system=None, soft_wrap=True)   # as console.out: uncropped
    caption, table.caption = table.caption, None   # a line of text the terminal wraps, not the table's width
    with drawn.capture() as capture:
        drawn.print(table)
    table.caption = caption
    return max((len(line) for line in capture.get().splitlines()), default=0)


# ---------------------------------------------------------------- evaluation


def show_evaluation(console, result: dict) -> None:
    """Headline figures, the per-class table, the confusion matrix, the most-confused pairs."""
    head = FoldingTable.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    if result.get("model"):
        head.add_row("model", escape(str(result["model"])))
    if result.get("dataset"):
        split = f" ({escape(str(result['split']))} split)" if result.get("split") else ""
        head.add_row("data", escape(str(result["dataset"])) + split)
    head.add_row("samples", f"{result['samples']:,}")
    smoothing = result.get("label_smoothing")
    head.add_row("loss", f"{result['loss']:.4f}" + (f" (labels smoothed by {smoothing:g})" if smoothing else ""))
    head.add_row("accuracy", f"[bold]{pct(result['accuracy'])}[/bold]{label(result.get('tta', 'none'))}")
    if "top_k_accuracy" in result:   # not with k classes or fewer: always 100%
        head.add_row(f"top-{result['top_k']} accuracy", pct(result["top_k_accuracy"]))
    head.add_row("macro F1", f"{result['macro_f1']:.4f}")
    console.print(head)
    console.print()
    console.print(per_class_table(result))
    console.print()
    names = result["class_names"]
    if len(names) <= MAX_TABLE_CLASSES:
        for table in confusion_tables(result, console.width if console.is_terminal else None):
            console.print(table)
    else:
        console.print(f"[dim]confusion matrix: {len(names)} classes are too many for a table; "
                      "see confusion.png[/dim]")
    pairs = result.get("most_confused") or []
    if pairs:
        console.print()
        table = FoldingTable(title="Most confused", title_justify="left")
        table.add_column("true")
        table.add_column("predicted as")
        table.add_column("count", justify="right")
        for p in pairs:
            table.add_row(escape(str(p["true"])), escape(str(p["predicted"])), str(p["count"]))
        console.print(table)


def per_class_table(result: dict) -> Table:
    """Precision, recall, F1 and support of each class of an evaluation."""
    table = FoldingTable(title="Per class", title_justify="left")
    table.add_column("class")
    for col in ("precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for row in result["per_class"]:
        f1 = row["f1"]
        style = "red" if row["support"] and f1 < 0.5 else None
        table.add_row(escape(str(row["class"])), f"{row['precision']:.4f}", f"{row['recall']:.4f}",
                      f"{f1:.4f}", str(row["support"]), style=style)
    return table


def confusion_tables(result: dict, width: int | None = None) -> list[Table]:
    """Rows are true classes, columns predictions; the diagonal in bold green, errors in red.

    Named columns where they fit `width` (a pipe or a file: always); else the columns are numbered
    and each row's label says its number ('3 cat'), in as many blocks of columns as the width needs.
    A narrow terminal never gets a cut count ('5' for 56) or a cut or vanished class name."""
    n = len(result["class_names"])
    named = _confusion(result, range(n), keyed=False)
    if width is None or _natural_width(named) <= width:
        return [named]
    for blocks in range(1, n + 1):
        per = -(-n // blocks)   # as even as the blocks can be: 5 and 5, not 9 and 1
        tables = [_confusion(result, range(start, min(start + per, n)), keyed=True) for start in range(0, n, per)]
        if per == 1 or all(_natural_width(t) <= width for t in tables):
            return tables
    return [named]


def _natural_width(table: Table) -> int:
    from rich.console import Console

    return Console(width=UNBOUNDED).measure(table).maximum   # rich caps a measurement at its console's width


def _confusion(result: dict, columns: range, keyed: bool) -> Table:
    from rich import box

    names = [str(c) for c in result["class_names"]]
    cm = result["confusion"]
    title = "Confusion matrix (rows: true, columns: predicted"
    if keyed:
        part = "" if len(columns) == len(names) else f", classes {columns[0]} to {columns[-1]}"
        title += f" by number{part})"
    else:
        title += ")"
    table = FoldingTable(title=title, title_justify="left")
    if keyed:   # no rules between the columns: ten counts and a row label fit 80 columns
        table.box, table.collapse_padding, table.pad_edge, table.show_edge = box.SIMPLE_HEAD, True, False, False
    table.add_column("true \\ pred", style="bold", no_wrap=True)
    for j in columns:
        table.add_column(str(j) if keyed else escape(names[j]), justify="right")
    for i, name in enumerate(names):
        cells = []
        for j in columns:
            count = cm[i][j]
            if i == j:
                cells.append(Text(str(count), style="bold green"))
            elif count:
                cells.append(Text(str(count), style="red"))
            else:
                cells.append(Text("·", style="dim"))
        table.add_row(escape(f"{i} {name}" if keyed else name), *cells)
    return table


# ---------------------------------------------------------------- predictions


def show_predictions(console, rows: list[dict], top_k: int) -> None:
    """One line per file: the best class and its probability, then the runners-up."""
    table = FoldingTable()
    table.add_column("file")
    table.add_column("class")
    table.add_column("probability", justify="right")
    if top_k > 1:
        table.add_column(f"next {top_k - 1}" if top_k > 2 else "next")
    for row in rows:
        top = row["top"][:max(1, top_k)]
        name = escape(str(row["file"]))
        if row.get("inverted"):
            name += " [dim](inverted)[/dim]"
        cells = [name, f"[bold]{escape(str(top[0]['class']))}[/bold]", f"{top[0]['probability']:.4f}"]
        if top_k > 1:
            cells.append(", ".join(f"{escape(str(t['class']))} {t['probability']:.4f}" for t in top[1:]))
        table.add_row(*cells)
    _keep_whole(table, console.width, [table.columns[:2], table.columns[:1]])
    console.print(table)


# ---------------------------------------------------------------- runs


def runs_table(rows, width: int | None = None) -> Table:
    """The table of `cnntrain runs`, newest first."""
    table = FoldingTable(title="runs, newest first")
    ids = [escape("/".join(Path(r["run"]).parts[-2:])) for r in rows]
    # A run id is copied into the next command: never folded, whatever else has to give way.
    table.add_column("run", no_wrap=True, min_width=max((len(i) for i in ids), default=3))
    words = [w for r in rows for w in str(r["status"]).split()]
    table.add_column("status", min_width=max((len(w) for w in words), default=6))   # 'complet' / 'ed' reads badly
    for column, justify in (("epochs", "right"), ("val acc", "right"),
                            ("test acc", "right"), ("on", "left"), ("time", "right"), ("images/s", "right")):
        table.add_column(column, justify=justify)
    for r in rows:
        images = r.get("test_images")
        on = "-" if r.get("test_from") is None else \
            f"{'?' if images is None else plural(images, 'image')} ({r['test_from']})"
        table.add_row(escape("/".join(Path(r["run"]).parts[-2:])), escape(r["status"]), _text(r["epochs"]),
                      pct(r["val_accuracy"]), pct(r["test_accuracy"]), on,
                      f"{r['wall_time_s']:.0f} s" if r["wall_time_s"] else "-",
                      f"{r['images_per_s']:,.0f}" if r["images_per_s"] else "-")
    table.caption = "test acc: from cnntrain evaluate (eval.json) if run, else from the fit (metrics.json)"
    if width is not None:
        _drop_to_fit(table, width, ("images/s", "time"), folded=("on", "val acc"))
    return table


def _text(value):
    return "-" if value is None else str(value)


def datasets_table(rows) -> Table:
    """rows: (dataset, location, found) in lookup order."""
    table = FoldingTable(title="datasets, in lookup order")
    for column in ("dataset", "location", "found"):
        table.add_column(column)
    for dataset, location, exists in rows:
        table.add_row(dataset, escape(location), "yes" if exists else "-")
    return table


def cache_table(root: str, rows) -> Table:
    """rows: cache.entries(); a partial entry is a killed build's, never read."""
    total = sum(r["bytes"] for r in rows)
    entries = f"{len(rows):,} entr{'y' if len(rows) == 1 else 'ies'}"
    table = FoldingTable(title=f"decoded-image cache {escape(root)}: {entries}, {total / 1e6:,.1f} MB "
                               "('cnntrain data cache clear' removes them)")
    for column in ("source", "images", "size", "MB", "last used"):
        table.add_column(column, justify="left" if column in ("source", "size") else "right")
    for r in rows:
        about = r.get("about") or {}
        # A killed build's folder, or an entry of an older cnntrain that did not record its source.
        source = about.get("source") or r["entry"] + (" (partial)" if r["partial"] else "")
        size = " ".join(s for s in ("x".join(map(str, r.get("shape") or [])),
                                    "" if about.get("resize") in (None, "stretch") else about["resize"]) if s)
        used = "-" if r.get("used") is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(r["used"]))
        table.add_row(escape(source), "-" if r["images"] is None else f"{r['images']:,}", size or "-",
                      f"{r['bytes'] / 1e6:,.1f}", used)
    return table


def verify_table(report: dict) -> Table:
    """`data verify`'s report (data.verify_dataset): the images of each class per split, under a title
    saying what was read; the files' checksums and the skipped files are lines of their own."""
    shape = "x".join(map(str, report["shape"]))
    table = FoldingTable(title=f"{escape(report['name'])}: {escape(report['source'])}, "
                               f"{report['train']:,} train and {report['test']:,} test images of {shape}, "
                               f"{len(report['classes']):,} class{'' if len(report['classes']) == 1 else 'es'}")
    test = report["per_class_test"]
    for column in ("class", "train") + (("test",) if test is not None else ()):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in report["classes"]:
        table.add_row(escape(str(name)), f"{report['per_class_train'][name]:,}",
                      *((f"{test[name]:,}",) if test is not None else ()))
    return table

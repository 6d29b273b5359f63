"""Showing evaluations and predictions: rich tables on a console, confusion.png, predictions CSV.

Every name that comes from data (class names, file names) is escaped before it
reaches rich, so a '[' in a name is printed as is and never read as markup.
"""
from __future__ import annotations

import csv
from pathlib import Path

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cnntrain import runs

# Past this many classes a confusion matrix no longer fits a terminal (or a figure's
# cells their numbers): the table points at confusion.png, the figure drops the counts.
MAX_TABLE_CLASSES = 20
MAX_ANNOTATED_CLASSES = 30


def _pct(value: float) -> str:
    return f"{100.0 * value:.2f}%"


# ---------------------------------------------------------------- evaluation


def show_evaluation(console, result: dict) -> None:
    """Headline figures, the per-class table, the confusion matrix, the most-confused pairs."""
    k = result.get("top_k", 5)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    if result.get("model"):
        head.add_row("model", escape(str(result["model"])))
    if result.get("dataset"):
        split = f" ({escape(str(result['split']))} split)" if result.get("split") else ""
        head.add_row("data", escape(str(result["dataset"])) + split)
    head.add_row("samples", f"{result['samples']:,}")
    head.add_row("loss", f"{result['loss']:.4f}")
    head.add_row("accuracy", f"[bold]{_pct(result['accuracy'])}[/bold]")
    head.add_row(f"top-{k} accuracy", _pct(result["top_k_accuracy"]))
    head.add_row("macro F1", f"{result['macro_f1']:.4f}")
    console.print(head)
    console.print()
    console.print(per_class_table(result))
    console.print()
    names = result["class_names"]
    if len(names) <= MAX_TABLE_CLASSES:
        console.print(confusion_table(result))
    else:
        console.print(f"[dim]confusion matrix: {len(names)} classes are too many for a table; "
                      "see confusion.png[/dim]")
    pairs = result.get("most_confused") or []
    if pairs:
        console.print()
        table = Table(title="Most confused", title_justify="left")
        table.add_column("true")
        table.add_column("predicted as")
        table.add_column("count", justify="right")
        for p in pairs:
            table.add_row(escape(str(p["true"])), escape(str(p["predicted"])), str(p["count"]))
        console.print(table)


def per_class_table(result: dict) -> Table:
    table = Table(title="Per class", title_justify="left")
    table.add_column("class")
    for col in ("precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for row in result["per_class"]:
        f1 = row["f1"]
        style = "red" if row["support"] and f1 < 0.5 else None
        table.add_row(escape(str(row["class"])), f"{row['precision']:.4f}", f"{row['recall']:.4f}",
                      f"{f1:.4f}", str(row["support"]), style=style)
    return table


def confusion_table(result: dict) -> Table:
    """Rows are true classes, columns predictions; the diagonal in bold green, errors in red."""
    names = [str(c) for c in result["class_names"]]
    cm = result["confusion"]
    table = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("true \\ pred", style="bold")
    for name in names:
        table.add_column(escape(name), justify="right")
    for i, name in enumerate(names):
        cells = []
        for j, count in enumerate(cm[i]):
            if i == j:
                cells.append(Text(str(count), style="bold green"))
            elif count:
                cells.append(Text(str(count), style="red"))
            else:
                cells.append(Text("·", style="dim"))
        table.add_row(Text(name), *cells)
    return table


def confusion_png(result: dict, path) -> Path:
    """The confusion matrix as a figure: counts in the cells, class names on the axes.

    The size is fixed by the class count (no tight bounding box), written atomically.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    import numpy as np

    names = [str(c) for c in result["class_names"]]
    cm = np.asarray(result["confusion"], dtype=np.int64)
    n = len(names)
    side = figure_inches(n)
    fig = Figure(figsize=(side, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    small = n > 12
    ax.set_xticklabels(names, rotation=45 if not small else 90, ha="right" if not small else "center",
                       fontsize=8 if small else 10)
    ax.set_yticklabels(names, fontsize=8 if small else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {_pct(result['accuracy'])} on {result['samples']:,} images")
    if n <= MAX_ANNOTATED_CLASSES:
        threshold = cm.max() / 2 if cm.size and cm.max() else 0
        fontsize = 9 if n <= 12 else 6
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize,
                        color="white" if cm[i, j] > threshold else "black")
    fig.subplots_adjust(left=0.18, bottom=0.18, right=0.95, top=0.92)
    path = Path(path)
    try:
        with runs.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    except OSError as exc:
        raise runs.write_error(path, exc) from None
    return path


def figure_inches(num_classes: int) -> float:
    """Side of the square confusion figure in inches (100 dpi): grows with the classes, within 5-20."""
    return float(min(20.0, max(5.0, 2.0 + 0.5 * num_classes)))


# ---------------------------------------------------------------- predictions


def show_predictions(console, rows: list[dict], top_k: int) -> None:
    """One line per file: the best class and its probability, then the runners-up."""
    table = Table()
    table.add_column("file", overflow="fold")
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
    console.print(table)


CSV_HEADER = ("file", "rank", "class", "probability")


def predictions_csv(rows: list[dict], path) -> Path:
    """file,rank,class,probability: one line per file and rank (1 = most probable)."""
    path = Path(path)
    try:
        with runs.atomic_path(path, suffix=".csv") as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(CSV_HEADER)
                for row in rows:
                    for rank, entry in enumerate(row["top"], start=1):
                        writer.writerow([str(row["file"]), rank, entry["class"],
                                         f"{float(entry['probability']):.6f}"])
    except OSError as exc:
        raise runs.write_error(path, exc) from None
    return path

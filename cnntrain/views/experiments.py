"""How the experiment commands show their results: runs compared, a sweep's leaderboard, the LR finder.

Plain aligned text, not rich tables: the columns hold figures that are compared by eye across
runs, and a fixed layout reads the same in a terminal, a log and a README.
"""
from __future__ import annotations

from cnntrain.runs.numbers import figure, pct
from cnntrain.views.console import escape, out

LABEL = 24   # width of the row names
CELL = 14    # width of one run's column at least


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return str(value)


def _rows(header: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    width = max([CELL] + [len(h) + 2 for h in header] + [len(c) + 2 for _, cells in rows for c in cells])
    label = max([LABEL] + [len(name) + 2 for name, _ in rows])
    lines = ["".ljust(label) + "".join(h.rjust(width) for h in header)]
    lines += [name.ljust(label) + "".join(c.rjust(width) for c in cells) for name, cells in rows]
    return [line.rstrip() for line in lines]


def compare_lines(result: dict) -> list[str]:
    """The text of `runs --compare`: spec differences, then the figures side by side."""
    labels = result["labels"]
    lines = ["spec differences:"]
    if result["differences"]:
        lines += ["  " + line for line in _rows(labels, [(p, [_cell(v) for v in values])
                                                         for p, values in result["differences"].items()])]
    else:
        lines.append("  none: the specs are the same")
    figures = result["figures"]
    monitor = next((f["monitor"] for f in figures if f["monitor"]), "best")

    def row(name, key, show):
        return name, [show(f[key]) for f in figures]

    def best(f):
        return "-" if f["best"] is None else f"{figure(f['monitor'] or '', f['best'])} @{f['best_epoch']}"

    table = [row("status", "status", _cell), row("epochs", "epochs", _cell),
             (f"best {monitor}", [best(f) for f in figures]),
             row("validation accuracy", "val_accuracy", pct), row("validation loss", "val_loss", _num),
             row("test accuracy", "test_accuracy", pct), row("test loss", "test_loss", _num),
             ("evaluated accuracy", [_older(f, pct(f["eval_accuracy"])) for f in figures]),
             ("macro F1", [_older(f, _num(f["macro_f1"])) for f in figures]),
             *_tta_rows(figures),
             row("parameters", "parameters", lambda v: "-" if v is None else f"{v:,}"),
             row("wall time", "wall_time_s", lambda v: "-" if v is None else f"{v:.1f} s"),
             row("images/s", "images_per_s", lambda v: "-" if v is None else f"{v:,.0f}")]
    lines += ["", "figures:"] + ["  " + line for line in _rows(labels, table)]
    return lines


def _older(f: dict, cell: str) -> str:
    """An evaluation of an earlier epoch's model, marked as that epoch's: not the run's figure."""
    return cell if f.get("eval_epoch") is None else f"{cell} (epoch {f['eval_epoch']})"


def _tta_rows(figures: list[dict]) -> list[tuple[str, list[str]]]:
    """Which test-time augmentation each accuracy above averaged over; only where a run used one."""
    rows = []
    for name, key in (("test accuracy's TTA", "test_tta"), ("evaluated accuracy's TTA", "eval_tta")):
        values = [f.get(key) for f in figures]
        if any(v not in (None, "none") for v in values):
            rows.append((name, [v or "-" for v in values]))
    return rows


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def show_compare(result: dict) -> None:
    """Print `runs --compare` to stdout."""
    for line in compare_lines(result):
        out.print(escape(line))


def lr_find_lines(result: dict, png) -> list[str]:
    """The text of `lr-find`: the range tried, the suggestion and its --set line."""
    stop = (f"stopped at step {result['stopped_at']}: the loss exploded" if result["stopped_at"]
            else "the loss never exploded")
    return [f"lr-find: {result['steps_run']} of {result['steps']} steps from {result['start']:g} to {result['end']:g} "
            f"({stop})",
            f"lowest loss {result['lowest_loss']:.4f} at lr {result['minimum']:.2g}; steepest descent at lr "
            f"{result['steepest']:.2g}; minimum / 10: {result['min_over_10']:.2g}",
            f"suggested: {result['set']}"]


def leaderboard_lines(board: dict, sweep) -> list[str]:
    """board: leaderboard.json's content. One line per finished trial, best first."""
    rows, monitor = board["trials"], board["monitor"]
    lines = [f"leaderboard of {sweep}: {len(rows)} trials by {monitor} ({board['direction']}), best first",
             f"  {'trial':>5}  {'state':<8}  {monitor:>12}  {'epochs':>6}  {'time':>8}  overrides"]
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.4f}"
        seconds = "-" if r.get("seconds") is None else f"{r['seconds']:.1f} s"
        lines.append(f"  {r['number']:>5}  {r['state']:<8}  {value:>12}  {_cell(r.get('epochs')):>6}  {seconds:>8}  "
                     + " ".join(r["set"]))
    best = next((r for r in rows if r["state"] == "COMPLETE"), None)
    if best is not None:
        lines.append(f"best: trial {best['number']}; its spec is {sweep}/best.yaml (cnntrain fit {sweep}/best.yaml)")
    return lines


def trial_line(row: dict) -> str:
    """One line per finished sweep trial, as the sweep prints it."""
    value = "" if row["value"] is None else f" {row['value']:.4f}"
    error = f": {row['error']}" if row.get("error") else ""
    return f"trial {row['number']} {row['state'].lower()}{value}{error}  {' '.join(row['set'])}  ->  {row['run']}"


def show_leaderboards(boards) -> None:
    """Each sweep's leaderboard, for `cnntrain runs`: (sweep folder, leaderboard.json's content) pairs."""
    for sweep, board in boards:
        out.print()
        for line in leaderboard_lines(board, sweep):
            out.print(escape(line))


def trial_reporter(mode: str):
    """A trial's fit talks as `cnntrain fit` does (progress on stderr), without its final table:
    the sweep prints one line per trial and the leaderboard instead."""
    from cnntrain.views.reporter import Reporter

    return Reporter(mode, summary=False)

"""Test accuracy against wall seconds and epochs: a fast recipe beside the chapter's, in one run.

    python benchmarks/time_to_accuracy.py [--pair cifar10|mnist] [--minutes 60]
                                          [--set KEY=VALUE ...] [--mixed-precision] [--out DIR]
    python benchmarks/time_to_accuracy.py --config configs/cifar10_fast.yaml --config configs/cifar10.yaml
    python benchmarks/time_to_accuracy.py --config "configs/cifar10_fast.yaml --set fit.epochs=16 --set name=short"
    python benchmarks/time_to_accuracy.py --config configs/mnist_fast.yaml --config "..." --seeds 3

Each config is trained by the real `cnntrain fit` path (in this process, one after the other,
into run folders under --out), with one more callback: at every epoch end it predicts the whole
test split with the model as it is then (the EMA average where the spec has one) and notes the
accuracy and the wall seconds since the fit began. Those seconds include everything a user waits
for (reading the data, building, the preflight step, the epochs, validation, checkpoints) except
the test predictions themselves, which `cnntrain fit` does not make. A fit stops at the first
epoch end past --minutes, so a schedule planned for more epochs is cut there: the curve is what
that much time buys with that recipe. The test split is only measured, never used for choices.

Writes DIR/time_to_accuracy.csv (config, epoch, wall_s, test_accuracy, val_accuracy, train_accuracy)
and DIR/time_to_accuracy.png (two panels: against minutes and against epochs), and prints the
accuracy each config had reached at 10, 30 and 60 minutes.

--seeds N trains each config N times, with seed 1..N (named NAME-s1, ...), the configs taking
turns seed by seed so that a change of load falls on all of them, and prints for each config the
mean and the spread (highest minus lowest) over its seeds of the last epoch's validation and test
accuracy and of its wall time. A recipe change is adopted on the validation figures only: when its
mean beats the old recipe's by more than both spreads.

--airbench EPOCHS (repeat) adds the yardstick as a side: the airbench94 port
(benchmarks/reference/airbench94_torch.py) trained for EPOCHS (its own 9.9, or what fills another
budget) by --torch-python, a Python with PyTorch, on --data-dir's cifar10-jpeg folder, taking its turn
with the configs (and its seed with --seeds). Its rows come from its own per-epoch lines: the test
accuracy of the weights as trained and the seconds since its training began (its JPEG reading
before, its test predictions never, on the clock); its final figure is its own six-view TTA.

    python benchmarks/time_to_accuracy.py --config "configs/cifar10_fast.yaml --set fit.epochs=11" \
        --airbench 9.9 --torch-python /work/venvs/torch/bin/python --data-dir /work/bg/data
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))   # cpu_speed's CPU facts
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

PAIRS = {   # the fast recipe, its short setting where it has one, the chapter's model improved
    "cifar10": ("configs/cifar10_fast.yaml", "configs/cifar10_fast.yaml --set fit.epochs=16 --set name=cifar10_fast_16",
                "configs/cifar10.yaml"),
    "mnist": ("configs/mnist_fast.yaml", "configs/mnist.yaml"),
}
MARKS_MIN = (2, 10, 30, 60)   # minutes at which the summary reads each curve


def make_curve_callback(keras, x_test, y_test, start: float, budget_s: float, rows: list, name: str):
    class TestCurve(keras.callbacks.Callback):
        """Test accuracy at each epoch end, on a clock that leaves out its own predictions."""

        def __init__(self):
            super().__init__()
            self.excluded = 0.0

        def on_epoch_end(self, epoch, logs=None):
            t0 = time.perf_counter()
            wall = t0 - start - self.excluded
            probs = self.model.predict(x_test, batch_size=1000, verbose=0)
            accuracy = float(np.mean(np.argmax(probs, axis=-1) == y_test))
            logs = logs or {}
            rows.append({"config": name, "epoch": epoch + 1, "wall_s": round(wall, 1),
                         "test_accuracy": round(accuracy, 5),
                         "val_accuracy": _round(logs.get("val_accuracy")),
                         "train_accuracy": _round(logs.get("accuracy"))})
            print(f"  {name} epoch {epoch + 1}: {wall / 60:6.1f} min  test {accuracy:.2%}  "
                  f"val {_pct(logs.get('val_accuracy'))}  train {_pct(logs.get('accuracy'))}", flush=True)
            self.excluded += time.perf_counter() - t0
            if wall >= budget_s:
                self.model.stop_training = True

    return TestCurve()


def _round(value):
    return None if value is None else round(float(value), 5)


def _pct(value) -> str:
    return "-" if value is None else f"{float(value):.2%}"


def parse_config(entry: str) -> tuple[str, list[str]]:
    """'FILE' or 'FILE --set KEY=VALUE ...': a config and the overrides for it alone."""
    import shlex
    words = shlex.split(entry)
    sets = [w for i, w in enumerate(words[1:], 1) if words[i - 1] == "--set"]
    if len(words) != 1 + 2 * len(sets) or any(w != "--set" for w in words[1::2]):
        raise SystemExit(f"--config {entry!r}: expected FILE [--set KEY=VALUE ...]")
    return words[0], sets


def run_one(config: str, args, out: Path, rows: list, seed: int | None = None) -> dict:
    from cnntrain.backend import keras
    from cnntrain.data import splits
    from cnntrain.spec import load_spec
    from cnntrain.train.fit import FitOptions, fit
    from cnntrain.views import reporter

    path, own = parse_config(config)
    spec = load_spec(path, [*args.set, *own])
    if seed is not None:
        spec = load_spec(path, [*args.set, *own, f"seed={seed}", f"name={spec['name']}-s{seed}"])
    name = spec["name"]
    # The test images as fit will see them (the same reader, limits and image size), read before
    # the clock starts; the model's own front layer normalizes them.
    data = splits.prepare(spec, data_dir=args.data_dir, offline=True)
    x_test = data.x_test.astype("float32")
    y_test = np.asarray(data.y_test).reshape(-1)
    del data
    keras.backend.clear_session()
    start = time.perf_counter()
    curve = make_curve_callback(keras, x_test, y_test, start, args.minutes * 60, rows, name)
    options = FitOptions(data_dir=args.data_dir, offline=True, out=str(out / name), device="cpu",
                         mixed_precision=args.mixed_precision, threads=args.threads, callbacks=(curve,))
    run_dir = fit(spec, options, reporter.Reporter("quiet"))
    total = time.perf_counter() - start - curve.excluded
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"config": config, "name": name, "seed": seed, "run": str(run_dir), "wall_s": total,
            "final_test": metrics.get("test", {}).get("accuracy"), "tta": metrics.get("test", {}).get("tta"),
            "speed": speed(spec, metrics, json.loads((run_dir / "env.json").read_text()))}


AIRBENCH = ROOT / "benchmarks" / "reference" / "airbench94_torch.py"


def airbench_rows(lines, name: str) -> tuple[list, float | None, float | None]:
    """The port's output read: a row per `epoch N test A wall S s` line, and from its last line
    (`test accuracy: tta0 A tta1 B tta2 C; S s in all, ...`) the six-view TTA accuracy and its seconds."""
    import re
    rows, final, wall = [], None, None
    for line in lines:
        if m := re.fullmatch(r"epoch (\d+) test ([0-9.]+) wall ([0-9.]+) s", line.strip()):
            rows.append({"config": name, "epoch": int(m[1]), "wall_s": float(m[3]), "test_accuracy": float(m[2]),
                         "val_accuracy": None, "train_accuracy": None})
        elif m := re.match(r"test accuracy: .*tta2 ([0-9.]+); ([0-9.]+) s in all", line.strip()):
            final, wall = float(m[1]), float(m[2])
    return rows, final, wall


def run_airbench(epochs: float, args, out: Path, rows: list, seed: int | None = None) -> dict:
    """The airbench94 port trained for `epochs` in its own process; its per-epoch lines into `rows`."""
    import subprocess
    if not args.torch_python:
        raise SystemExit("--airbench needs --torch-python, a Python with PyTorch")
    name = f"airbench94-{epochs:g}ep" + ("" if seed is None else f"-s{seed}")
    folder = Path(args.data_dir) / "cifar10-jpeg"
    command = [args.torch_python, str(AIRBENCH), "--data-dir", str(folder if folder.is_dir() else args.data_dir),
               "--epochs", str(epochs), "--seed", str(seed or 0)]
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        for line in child.stdout:
            lines.append(line)
            got, _, _ = airbench_rows([line], name)
            for row in got:
                print(f"  {name} epoch {row['epoch']}: {row['wall_s'] / 60:6.1f} min  test {row['test_accuracy']:.2%}",
                      flush=True)
    if child.returncode:
        raise SystemExit(f"{name}: the port exited with status {child.returncode}")
    got, final, wall = airbench_rows(lines, name)
    rows.extend(got)
    (out / f"{name}.log").write_text("".join(lines))
    return {"config": f"airbench94 port, {epochs:g} epochs", "name": name, "seed": seed, "run": str(out / f"{name}.log"),
            "wall_s": wall, "final_test": final, "tta": "airbench", "speed": "-"}


def speed(spec, metrics: dict, env: dict) -> str:
    """'images/s, GFLOP/s (share of this CPU's peak)' of the run's steady training epochs."""
    from cpu_speed import cpu_facts, peak_flops, train_flops_per_image

    rate = metrics.get("train_images_per_s")
    if not rate:
        return "-"
    flops = rate * train_flops_per_image(spec)
    peak = peak_flops(cpu_facts(), "bf16" if "bfloat16" in env.get("precision", "") else "fp32")
    return f"{rate:,.0f} img/s, {flops / 1e9:,.0f} GFLOP/s" + (f" ({flops / peak:.0%} of peak)" if peak else "")


def at_minutes(rows: list, name: str, minutes: float):
    """The test accuracy of the last epoch that ended by `minutes`, and that epoch."""
    done = [r for r in rows if r["config"] == name and r["wall_s"] <= minutes * 60]
    return (done[-1]["test_accuracy"], done[-1]["epoch"]) if done else (None, None)


def spread(values: list) -> str:
    """'mean (spread highest - lowest)' of accuracies."""
    return f"{np.mean(values):.2%} (spread {max(values) - min(values):.2%})"


def print_seed_summary(configs: list, results: list, rows: list):
    """Per config, over its seeds: the last epoch's validation and test accuracy, and the wall time."""
    print()
    print("| config | seeds | val accuracy, mean (spread) | test accuracy, mean (spread) | wall s, mean (spread) |")
    print("| --- | --- | --- | --- | --- |")
    for config in configs:
        mine = [r for r in results if r["config"] == config]
        last = [[row for row in rows if row["config"] == r["name"]][-1] for r in mine]
        vals = [row["val_accuracy"] for row in last if row["val_accuracy"] is not None]
        walls = [r["wall_s"] for r in mine]
        print(f"| `{config}` | {len(mine)} | {spread(vals) if vals else '-'} "
              f"| {spread([row['test_accuracy'] for row in last])} "
              f"| {np.mean(walls):.0f} ({max(walls) - min(walls):.0f}) |")


def plot(rows: list, names: list, path: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in names:
        mine = [r for r in rows if r["config"] == name]
        left.plot([r["wall_s"] / 60 for r in mine], [100 * r["test_accuracy"] for r in mine], "o-", label=name)
        right.plot([r["epoch"] for r in mine], [100 * r["test_accuracy"] for r in mine], "o-", label=name)
    left.set_xlabel("wall minutes (this machine)")
    right.set_xlabel("epoch")
    for ax in (left, right):
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="cifar10",
                        help="the fast config and the chapter's (default cifar10)")
    parser.add_argument("--config", action="append", default=[],
                        help="a config to run instead of --pair, optionally with its own overrides: "
                             "'FILE --set KEY=VALUE' (repeat; give each its own name=)")
    parser.add_argument("--minutes", type=float, default=60.0, help="wall minutes per config (default 60)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every config")
    parser.add_argument("--data-dir", default="/work/shared/data", help="folder holding the datasets")
    parser.add_argument("--mixed-precision", action="store_true", help="fit --mixed-precision")
    parser.add_argument("--threads", type=int, default=None, help="fit --threads")
    parser.add_argument("--seeds", type=int, default=None,
                        help="train each config with seeds 1..N and print mean and spread (default: the spec's seed)")
    parser.add_argument("--airbench", action="append", type=float, default=[], metavar="EPOCHS",
                        help="also train the airbench94 port for EPOCHS (repeat), under --torch-python")
    parser.add_argument("--torch-python", default=None, help="a Python with PyTorch, for --airbench")
    parser.add_argument("--out", default="benchmark-runs/time_to_accuracy", help="runs, CSV and PNG go here")
    args = parser.parse_args(argv)
    configs = args.config or ([] if args.airbench else list(PAIRS[args.pair]))   # --airbench alone: only the port
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from cpu_speed import cpu_facts

    facts = cpu_facts()
    machine = f"{facts['name']}, {facts['cores']} cores"
    print(f"{machine}; {args.minutes:g} min per config; configs: {', '.join(configs)}"
          + (f"; --set {' --set '.join(args.set)}" if args.set else "")
          + ("; mixed_bfloat16" if args.mixed_precision else ""), flush=True)

    rows, results = [], []
    seeds = range(1, args.seeds + 1) if args.seeds else [None]
    sides = configs + [float(e) for e in args.airbench]
    for side, seed in [(c, s) for s in seeds for c in sides]:
        if isinstance(side, float):
            results.append(run_airbench(side, args, out, rows, seed))
        else:
            results.append(run_one(side, args, out, rows, seed))
        with open(out / "time_to_accuracy.csv", "w", newline="") as f:   # after each config: a kill keeps the rest
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    names = [r["name"] for r in results]
    plot(rows, names, out / "time_to_accuracy.png", f"test accuracy, {machine}, real data")

    marks = [m for m in MARKS_MIN if m <= args.minutes]
    print()
    print("| config | " + " | ".join(f"{m} min" for m in marks) + " | final (epochs, wall) | training speed |")
    print("| --- | " + " | ".join("---" for _ in marks) + " | --- | --- |")
    for result in results:
        cells = []
        for m in marks:
            accuracy, epoch = at_minutes(rows, result["name"], m)
            cells.append("-" if accuracy is None else f"{accuracy:.2%} (ep {epoch})")
        last = [r for r in rows if r["config"] == result["name"]][-1]
        final = result["final_test"]
        tta = "" if result["tta"] in (None, "none") else (
            f", {final:.2%} with its six-view TTA" if result["tta"] == "airbench" else
            f", {final:.2%} fit's figure with test-time {result['tta']}")
        print(f"| `{result['config']}` | " + " | ".join(cells)
              + f" | {last['test_accuracy']:.2%} ({last['epoch']} epochs, {result['wall_s']:.0f} s{tta}) "
              f"| {result['speed']} |")
    if args.seeds:
        print_seed_summary([r["config"] for r in results[:len(sides)]], results, rows)
    print(f"\nwrote {out / 'time_to_accuracy.csv'} and {out / 'time_to_accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training images/s of `cnntrain fit` against a plain hand-written Keras `model.fit`.

    python benchmarks/fit_overhead.py [--images 12000] [--epochs 3] [--rounds 5]
                                      [--data-dir /work/shared/data] [--control] [--explain]

Both sides train the chapter's MNIST model (configs/seed/mnist.yaml: Conv32-Conv32-
Pool-Dense64-Dense10, 305,194 parameters, raw 0-255 pixels, Adadelta, batch 100, no
augmentation) on the same first --images training images of mnist.npz, in this one
process, one after the other:

  cnntrain  the real `cnntrain fit` path, in-process: load_spec(configs/seed/mnist.yaml,
            --set data.validation=none data.limit_train=N data.limit_test=1000
            fit.epochs=E) and train.fit(...) into a temporary run folder, i.e. what
            `cnntrain fit configs/seed/mnist.yaml --set ... --quiet --out TMP` runs
            (our tf.data pipeline, NanGuard, Throughput, RunState, the quiet reporter).
  keras     the chapter's script: keras.Sequential of the same layers, compile with
            the same optimizer/loss/metric, model.fit(x, y, batch_size=100, epochs=E,
            verbose=0) on a float32 numpy array, with a timing callback.

What is compared: the seconds of each training epoch AFTER THE FIRST (the first one
traces the train step; there is no validation on either side), i.e. from Keras'
on_epoch_begin to on_epoch_end. For cnntrain that is the `seconds` column of the run's
history.csv (RunState's clock; checked against metrics.json's train_images_per_s).
For keras it is a callback doing the same. images/s = N / seconds.

A second figure, "with checkpoint", is the same epoch on the cnntrain side measured by
a callback placed last (through the reporter), so its epoch end comes after RunState
has written history.csv, best.keras and the resume weights: what resumability costs
per epoch. The plain script writes nothing, so its figure is the same as above.

The machine may be shared, so absolute figures are noisy: the sides alternate within
every round (A B, then B A, ...) and the result is the median of the per-round ratios
cnntrain/keras (>= 0.98 is the target). The table also gives the ratio in CPU seconds
of the process, all threads (images per CPU-second, from on_epoch_begin to the end of
the epoch's last batch, the same callback on both sides), which a busy machine
disturbs less than wall time, though not to nothing.
--control runs the plain side twice per round: the spread of that A/A ratio is the
resolution of the measurement on this machine at that time. The summary also gives,
per side, how long a steady epoch waited between on_epoch_begin and its first batch
(Keras builds the epoch's input iterator there, and tears down the previous one).

--explain adds diagnostic sides to every round, to attribute a gap: plain Keras fed by
cnntrain's tf.data pipeline ("pipeline"), plain Keras with cnntrain's per-batch NanGuard
("nanguard"), the real cnntrain path with --set fit.strategy=one-device
("one-device": OneDeviceStrategy('/cpu:0'), what fit.strategy auto used to pick on one
device), and the real path with tf.data autotuning switched off by a monkeypatch for
that run only ("autotune"). The "cnntrain" side itself is never patched.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnntrain.backend import keras  # noqa: E402

SPEC = ROOT / "configs" / "seed" / "mnist.yaml"
BATCH = 100  # the seed spec's fit.batch_size; checked below


class EpochClock(keras.callbacks.Callback):
    """Per epoch: wall (perf_counter) and CPU (process_time: all threads of this process)
    seconds from on_epoch_begin to the end of the epoch's last training batch ("train"),
    and wall seconds from on_epoch_begin to on_epoch_end ("epoch")."""

    def __init__(self):
        super().__init__()
        self.train, self.cpu, self.epoch, self.wait = [], [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.first = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.first is None:  # how long the epoch waited for its first batch
            self.first = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # Overwritten every batch: what is left after the epoch is its last batch. (On
        # TensorFlow, Keras converts the logs to Python floats after every batch anyway,
        # whether or not a callback looks at them: this hook adds no synchronization.)
        self.wall1, self.cpu1 = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(time.perf_counter() - self.wall0)
        self.train.append(self.wall1 - self.wall0)
        self.cpu.append(self.cpu1 - self.cpu0)
        self.wait.append(self.first - self.wall0)

    def steady(self) -> dict:
        """Every epoch but the first (which traces the train step)."""
        return {"train": self.train[1:], "cpu": self.cpu[1:], "epoch": self.epoch[1:], "wait": self.wait[1:]}


def load_mnist(data_dir: str | None, n: int, tmp: Path):
    """(x, y, data_dir_for_cnntrain, note): the first n MNIST training images, uint8."""
    path = Path(data_dir or "") / "mnist.npz"
    if data_dir and path.is_file():
        with np.load(path) as f:
            return f["x_train"][:n], f["y_train"][:n], str(Path(data_dir)), f"real MNIST from {path}"
    # Same shapes and dtypes as the real file (uint8 images, 10 classes), written in
    # Keras' layout so that cnntrain's loader reads it like the real one.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (max(n, 1000), 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, max(n, 1000)).astype(np.uint8)
    fake = tmp / "data"
    fake.mkdir(exist_ok=True)
    np.savez(fake / "mnist.npz", x_train=x, y_train=y, x_test=x[:1000], y_test=y[:1000])
    return x[:n], y[:n], str(fake), f"RANDOM uint8 arrays ({path} not found): timings only"


# ---------------------------------------------------------------- the two sides


def run_cnntrain(args, data_dir: str, out: Path, patch=contextlib.nullcontext, extra=()) -> dict:
    from cnntrain.views import reporter
    from cnntrain.spec import load_spec
    from cnntrain.train.fit import FitOptions, fit

    clock = EpochClock()

    class Reporter(reporter.Reporter):
        """The quiet reporter, whose (otherwise empty) progress callback is our clock."""

        def callback(self, steps, epochs):
            return clock

        def summary(self, metrics, run_dir):
            pass

    spec = load_spec(SPEC, cnntrain_overrides(args) + list(extra))
    assert spec["fit"]["batch_size"] == BATCH and not spec["augment"], "the seed spec changed"
    keras.backend.clear_session()
    with patch():
        run_dir = fit(spec, FitOptions(data_dir=data_dir, offline=True, out=str(out), device="cpu"), Reporter("quiet"))
    with open(run_dir / "history.csv", newline="") as f:
        history = [float(row["seconds"]) for row in csv.DictReader(f)]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["parameters"] == 305_194, metrics["parameters"]
    assert len(history) == args.epochs, history
    # "seconds": history.csv, RunState's on_epoch_begin to on_epoch_end (before it saves).
    # "epoch": our clock, last in the callback list: its epoch end comes after RunState
    # has written history.csv, best.keras and the resume weights.
    return {"seconds": history[1:], **clock.steady(), "metrics_images_per_s": metrics["train_images_per_s"]}


# ---------------------------------------------------------------- diagnostics (--explain)
# Each patch changes ONE thing in the real `cnntrain fit` path for one run, to measure what
# that thing costs. They are hypotheses under test, not the product: the "cnntrain" side
# always runs the code as it is.


@contextlib.contextmanager
def _patched(module, name, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def autotune_off():
    """tf.data autotuning off in cnntrain's datasets (map and prefetch keep AUTOTUNE,
    which then means: as many as there are cores / a small fixed buffer)."""
    from cnntrain.feed import pipeline
    from cnntrain.backend import tf

    def no_autotune(original):
        def wrapped(*a, **k):
            options = tf.data.Options()
            options.autotune.enabled = False
            return original(*a, **k).with_options(options)
        return wrapped

    @contextlib.contextmanager
    def both():
        with _patched(pipeline, "train_dataset", no_autotune), _patched(pipeline, "eval_dataset", no_autotune):
            yield
    return both()


EXPLAIN = ("pipeline", "nanguard", "one-device", "autotune")


def cnntrain_overrides(args) -> list[str]:
    return ["data.validation=none", f"data.limit_train={args.images}", "data.limit_test=1000",
            f"fit.epochs={args.epochs}"]


def chapter_model():
    """configs/seed/mnist.yaml's layers, written by hand as the chapter's script does."""
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, (3, 3)), L.Activation("relu"),
        L.Conv2D(32, (3, 3)), L.Activation("relu"),
        L.MaxPooling2D((2, 2)),
        L.Flatten(),
        L.Dense(64), L.Activation("relu"),
        L.Dense(10), L.Activation("softmax"),
    ])


def run_keras(args, x, y, *, dataset=None, extra_callbacks=()) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(42)
    model = chapter_model()
    assert model.count_params() == 305_194, model.count_params()
    model.compile(optimizer="adadelta", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock = EpochClock()
    callbacks = [*extra_callbacks, clock]
    if dataset is None:
        model.fit(x, y, batch_size=BATCH, epochs=args.epochs, verbose=0, callbacks=callbacks)
    else:
        model.fit(dataset, epochs=args.epochs, verbose=0, callbacks=callbacks, shuffle=False)
    steady = clock.steady()
    return {"seconds": steady["epoch"], **steady}


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000, help="training images per epoch (default 12000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not counted (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--data-dir", default="/work/shared/data", help="folder holding mnist.npz")
    parser.add_argument("--explain", nargs="?", const=",".join(EXPLAIN), default="", metavar="LIST",
                        help="diagnostic sides, comma-separated (default: all): pipeline = plain Keras fed by "
                             "cnntrain's tf.data pipeline; nanguard = plain Keras with cnntrain's NanGuard; "
                             "one-device = cnntrain with --set fit.strategy=one-device (OneDeviceStrategy); "
                             "autotune = cnntrain with tf.data autotuning off (monkeypatched)")
    parser.add_argument("--control", action="store_true",
                        help="also run the plain Keras side a second time (an A/A test: the noise floor)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is not counted")
    unknown = {e.strip() for e in args.explain.split(",") if e.strip()} - set(EXPLAIN)
    if unknown:
        parser.error(f"--explain: unknown {', '.join(sorted(unknown))}; choose from {', '.join(EXPLAIN)}")

    from cnntrain.feed import pipeline
    from cnntrain.train.callbacks import NanGuard

    with tempfile.TemporaryDirectory(prefix="cnntrain-fit-bench-") as tmp:
        tmp = Path(tmp)
        x_u8, y, data_dir, note = load_mnist(args.data_dir, args.images, tmp)
        # The chapter's script: reshape to (N, 28, 28, 1) and astype('float32'); raw 0-255
        # pixels (normalize: none in the seed spec).
        x = x_u8.reshape(-1, 28, 28, 1).astype("float32")
        y = y.astype("int32")
        print(f"data: {note}; {len(x)} images/epoch, batch {BATCH}, {args.epochs} epochs/run "
              f"(first not counted), {args.rounds} rounds; {os.cpu_count()} CPU cores, "
              f"keras {keras.__version__}", flush=True)
        print("cnntrain side = cnntrain fit configs/seed/mnist.yaml --set " + " --set ".join(cnntrain_overrides(args))
              + f" --data-dir {data_dir} --device cpu --quiet --out TMP", flush=True)

        sides = {
            "cnntrain": lambda r: run_cnntrain(args, data_dir, tmp / f"run-{r}"),
            "keras": lambda r: run_keras(args, x, y),
        }
        explain = [e.strip() for e in args.explain.split(",") if e.strip()]
        if "pipeline" in explain:
            def on_pipeline(r):
                ds = pipeline.train_dataset(x_u8, y, batch_size=BATCH, augment=[], seed=42)
                return run_keras(args, x, y, dataset=ds)
            sides["keras+tf.data"] = on_pipeline
        if "nanguard" in explain:
            sides["keras+NanGuard"] = lambda r: run_keras(args, x, y, extra_callbacks=[NanGuard()])
        if "one-device" in explain:
            sides["cnntrain one-device"] = lambda r: run_cnntrain(args, data_dir, tmp / f"run-od-{r}",
                                                                  extra=["fit.strategy=one-device"])
        if "autotune" in explain:
            sides["cnntrain autotune-off"] = lambda r: run_cnntrain(args, data_dir, tmp / f"run-at-{r}", autotune_off)
        if args.control:
            sides["keras again"] = lambda r: run_keras(args, x, y)

        names = list(sides)
        results = {name: [] for name in names}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                started = time.perf_counter()
                results[name].append(sides[name](r))
                gc.collect()
                last = results[name][-1]
                print(f"  round {r + 1} {name:<15} {args.images / statistics.median(last['seconds']):8,.0f} images/s, "
                      f"{args.images / statistics.median(last['cpu']):6,.0f} per CPU-s  "
                      f"(run {time.perf_counter() - started:.0f} s)", flush=True)

    def ips(result, key="seconds"):
        return args.images / statistics.median(result[key])

    print("\nimages/s of the steady epoch(s), median per run; cpu = images per CPU-second of this process")
    header = (f"{'round':>5}  {'cnntrain img/s':>14}  {'keras img/s':>11}  {'ratio':>6}  "
              f"{'cpu ratio':>9}  {'cnntrain+ckpt img/s':>19}  {'ratio':>6}")
    extra = [n for n in names if n not in ("cnntrain", "keras")]
    header += "".join(f"  {n + ' img/s (ratio)':>26}" for n in extra)
    print(header)
    ratios = {key: [] for key in ("seconds", "train", "cpu", "epoch", *extra)}
    for r in range(args.rounds):
        c, k = results["cnntrain"][r], results["keras"][r]
        for key in ("seconds", "train", "cpu", "epoch"):
            ratios[key].append(ips(c, key) / ips(k, key))
        line = (f"{r + 1:>5}  {ips(c):14,.0f}  {ips(k):11,.0f}  {ratios['seconds'][-1]:6.3f}  "
                f"{ratios['cpu'][-1]:9.3f}  {ips(c, 'epoch'):19,.0f}  {ratios['epoch'][-1]:6.3f}")
        for n in extra:
            ratios[n].append(ips(results[n][r]) / ips(k))
            line += f"  {ips(results[n][r]):17,.0f} ({ratios[n][-1]:5.3f})"
        print(line)
    median = statistics.median(ratios["seconds"])
    print(f"\nmedian ratio cnntrain/keras, steady epoch, wall (history.csv vs callback): {median:.3f} "
          f"(target >= 0.98: {'met' if median >= 0.98 else 'NOT met'})")
    print(f"  same clock on both sides (epoch begin to last batch end), wall:           "
          f"{statistics.median(ratios['train']):.3f}")
    print(f"  same span, CPU seconds of the process (less sensitive to a shared CPU):  "
          f"{statistics.median(ratios['cpu']):.3f}")
    print(f"  with cnntrain's per-epoch checkpoint (history.csv, best.keras, weights): "
          f"{statistics.median(ratios['epoch']):.3f}")
    for n in extra:
        spread = ", ".join(f"{v:.2f}" for v in sorted(ratios[n]))
        print(f"  {'control' if n == 'keras again' else 'diagnostic'} {n}/keras, wall: "
              f"{statistics.median(ratios[n]):.3f} (rounds, sorted: {spread})")
    spread = ", ".join(f"{v:.2f}" for v in sorted(ratios["seconds"]))
    print(f"  cnntrain/keras per round, sorted: {spread}")
    ckpt = [statistics.median(e - t for e, t in zip(c["epoch"], c["seconds"])) for c in results["cnntrain"]]
    print(f"cnntrain's per-epoch checkpoint (RunState after the epoch's clock stops), median: "
          f"{statistics.median(ckpt):.3f} s")
    print("wait before the first batch of a steady epoch (median over runs, ms): " + ", ".join(
        f"{n} {1e3 * statistics.median(v for res in results[n] for v in res['wait']):,.0f}" for n in names))
    checks = [c["metrics_images_per_s"] for c in results["cnntrain"]]
    print("cnntrain's own metrics.json train_images_per_s per round: " + ", ".join(f"{v:,.0f}" for v in checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

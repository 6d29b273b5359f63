"""Input pipeline throughput: the chapter's ImageDataGenerator against ours.

    python benchmarks/input_pipeline.py [--n 20000] [--batch 50] [--rounds 3]

Random uint8 CIFAR-shaped data (50,000 x 32x32x3 by default, --data-n), the chapter's
augmentation (rotation up to 90 degrees, shifts of 0.1, horizontal flips) and
per-channel standardization. Each round measures every pipeline over --n images (not
the whole set, to keep a default run near a minute: ImageDataGenerator is slow), and
the rounds interleave the pipelines, so a noisy machine hurts them alike; the table
reports the median round, in images/s of wall time and in process CPU time per image
(the second is steadier on a shared machine; ImageDataGenerator uses one core, the
tf.data pipelines all of them).

  (a) ImageDataGenerator(featurewise_center, featurewise_std_normalization,
      rotation_range=90, width/height_shift_range=0.1, horizontal_flip).flow(x, y)
  (b) train_dataset with the augmentation fused (one projective transform per batch)
  (c) train_dataset with the Keras layers chained (CNNTRAIN_FUSE_AUGMENT=0)
  (d) train_dataset without augmentation

ImageDataGenerator standardizes inside the generator; we standardize in the model's
first layer, so (b)-(d) map that same layer over their batches to do the same work.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from cnntrain.backend import keras, tf
from cnntrain.model.normalization import normalization_layer
from cnntrain.feed.pipeline import train_dataset


def chapter_layers():
    # RandomRotation's factor is a fraction of a full turn: 0.25 = +-90 degrees.
    return [keras.layers.RandomRotation(0.25), keras.layers.RandomTranslation(0.1, 0.1),
            keras.layers.RandomFlip("horizontal")]


def image_data_generator():
    """The chapter's generator. `keras.preprocessing.image.ImageDataGenerator` is gone
    in Keras 3; `tf.keras.preprocessing.image` still reaches Keras' legacy copy."""
    try:
        return tf.keras.preprocessing.image.ImageDataGenerator, "tf.keras.preprocessing.image"
    except AttributeError:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator

        return ImageDataGenerator, "keras.src.legacy.preprocessing.image"


def _measure(pull, n):
    """(images/s of wall time, microseconds of process CPU time per image).

    CPU time counts every thread of this process and nothing of other processes, so
    it shows the cost of a pipeline even when the machine is shared and wall-clock
    rates swing."""
    wall, cpu = time.perf_counter(), time.process_time()
    seen = 0
    while seen < n:
        seen += pull()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return seen / wall, cpu / seen * 1e6


def time_idg(flow, n):
    next(flow)  # warm-up outside the clock
    return _measure(lambda: len(next(flow)[0]), n)


def time_dataset(ds, n):
    it = iter(ds.repeat())
    for _ in range(3):  # warm-up: fill the prefetch buffer, let autotune settle
        next(it)
    return _measure(lambda: int(next(it)[0].shape[0]), n)


def build_dataset(x, y, batch, layers, norm, fuse: bool):
    previous = os.environ.get("CNNTRAIN_FUSE_AUGMENT")
    os.environ["CNNTRAIN_FUSE_AUGMENT"] = "1" if fuse else "0"
    try:
        ds = train_dataset(x, y, batch_size=batch, augment=layers, seed=0)
    finally:
        if previous is None:
            os.environ.pop("CNNTRAIN_FUSE_AUGMENT")
        else:
            os.environ["CNNTRAIN_FUSE_AUGMENT"] = previous
    return ds.map(lambda images, labels: (norm(images), labels),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="images measured per pipeline per round")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-n", type=int, default=50000, help="size of the random data set")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.data_n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, args.data_n)

    IDG, where = image_data_generator()
    idg = IDG(featurewise_center=True, featurewise_std_normalization=True, rotation_range=90,
              width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)
    t0 = time.perf_counter()
    idg.fit(x)
    idg_fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    norm = normalization_layer("standardize", x)
    ours_fit_s = time.perf_counter() - t0

    pipelines = {
        "(a) ImageDataGenerator.flow": lambda: idg.flow(x, y, batch_size=args.batch, seed=0),
        "(b) train_dataset, fused": lambda: build_dataset(x, y, args.batch, chapter_layers(), norm, True),
        "(c) train_dataset, chained Keras layers": lambda: build_dataset(x, y, args.batch, chapter_layers(),
                                                                        norm, False),
        "(d) train_dataset, no augmentation": lambda: build_dataset(x, y, args.batch, [], norm, True),
    }
    sources = {name: make() for name, make in pipelines.items()}
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    cpu_us: dict[str, list[float]] = {name: [] for name in pipelines}
    for r in range(args.rounds):
        for name, source in sources.items():
            timer = time_idg if name.startswith("(a)") else time_dataset
            rate, cost = timer(source, args.n)
            rates[name].append(rate)
            cpu_us[name].append(cost)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v[-1]:,.0f}" for v in rates.values())
              + " images/s", file=sys.stderr)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs "
          f"(load average {load:.1f} at the end); data {args.data_n:,} x 32x32x3 uint8, "
          f"batch {args.batch}, {args.n:,} images per pipeline per round, "
          f"median of {args.rounds} interleaved rounds")
    print(f"ImageDataGenerator from {where}; its fit() took {idg_fit_s:.2f} s, "
          f"our standardize statistics {ours_fit_s:.2f} s")
    print()
    width = max(map(len, rates))
    print(f"{'pipeline':<{width}}  {'images/s':>9}  {'min':>8}  {'max':>8}  {'vs (a)':>6}  "
          f"{'CPU us/img':>10}  {'vs (a)':>6}")
    a = "(a) ImageDataGenerator.flow"
    base, base_cpu = statistics.median(rates[a]), statistics.median(cpu_us[a])
    for name, values in rates.items():
        med, cost = statistics.median(values), statistics.median(cpu_us[name])
        print(f"{name:<{width}}  {med:>9,.0f}  {min(values):>8,.0f}  {max(values):>8,.0f}  "
              f"{med / base:>5.1f}x  {cost:>10.1f}  {base_cpu / cost:>5.1f}x")
    print()
    b = "(b) train_dataset, fused"
    print(f"(b)/(a) = {statistics.median(rates[b]) / base:.1f}x in images/s (target >= 5x), "
          f"{base_cpu / statistics.median(cpu_us[b]):.1f}x in CPU time per image")


if __name__ == "__main__":
    main()

"""Images per second of `predict_files` on a folder of MNIST-size PNGs.

    python benchmarks/predict_throughput.py [--count 2000] [--batch-size 256] [--repeat 3]

Generates COUNT 28x28 grayscale PNGs (a bright random stroke on black, like MNIST)
in a temporary folder, saves the MNIST-chapter model (Conv32-Conv32-Pool-Dense64-
Dense10, untrained: the weights do not change the cost) with cnntrain metadata, then
times predict_files end to end (expand, decode, auto-invert check, predict, top-k).
It also times the two halves alone, decoding and model.predict on the decoded
array, to show which one bounds the figure. The first, warm-up call is not counted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_pngs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        img = Image.new("L", (28, 28), 0)
        draw = ImageDraw.Draw(img)
        points = [tuple(int(v) for v in rng.integers(5, 23, 2)) for _ in range(4)]
        draw.line(points, fill=255, width=int(rng.integers(2, 4)))
        path = folder / f"{i:05d}.png"
        img.save(path)
        files.append(path)
    return files


def make_model(path: Path):
    from cnntrain.runs import model_file
    from cnntrain.backend import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255, name="scale"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model_file.save_model(model, path, {
        "class_names": [str(i) for i in range(10)], "input_shape": [28, 28, 1], "normalize": "scale",
        "background": "dark", "dataset": "mnist", "data_path": None, "image_size": None,
        "color_mode": None, "one_hot": False, "name": "mnist", "cnntrain_version": "0.1.0"})
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from cnntrain.data import image_files
    from cnntrain.assess.predict import predict_files

    with tempfile.TemporaryDirectory(prefix="cnntrain-bench-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "pngs"
        folder.mkdir()
        t0 = time.perf_counter()
        files = make_pngs(folder, args.count)
        print(f"wrote {len(files)} PNGs in {time.perf_counter() - t0:.1f} s")
        model_file = tmp / "mnist.keras"
        model = make_model(model_file)

        predict_files([str(files[0])], target=str(model_file))  # warm-up: load, trace
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            rows, errors, _info = predict_files([str(folder)], target=str(model_file),
                                                batch_size=args.batch_size)
            times.append(time.perf_counter() - t0)
            assert len(rows) == args.count and not errors, (len(rows), errors[:3])
        best, median = min(times), statistics.median(times)

        t0 = time.perf_counter()
        decoded = np.stack([image_files.read_image(f, height=28, width=28, channels=1) for f in files])
        decode_s = time.perf_counter() - t0
        model.predict(decoded[:args.batch_size].astype(np.float32), verbose=0)
        t0 = time.perf_counter()
        model.predict(decoded.astype(np.float32), batch_size=args.batch_size, verbose=0)
        model_s = time.perf_counter() - t0

    print(f"CPU cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    print(f"predict_files, {args.count} PNGs, batch {args.batch_size} (includes model load): "
          f"median {args.count / median:,.0f} images/s, best {args.count / best:,.0f} images/s "
          f"({median:.2f} s median of {args.repeat})")
    print(f"  decoding alone (1 thread):  {args.count / decode_s:,.0f} images/s")
    print(f"  model.predict alone:        {args.count / model_s:,.0f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Peak RSS and wall time of evaluate on a split streamed from a decoded-image cache file, with and
without test-time views, at two sizes: what evaluate holds must not grow with the split.

    python benchmarks/evaluate_views.py [--images 60000] [--small 20000] [--size 64] [--tta flip]
                                        [--dir /tmp]

Each figure is one child process (peak RSS: its ru_maxrss, TensorFlow's ~600 MiB included) that
runs evaluate_model with a tiny model (one strided Conv2D, seeded) over a rows.Rows cache file of
random uint8 images written first (kept in --dir for the next run). The loss printed beside is the
check that every side computed the same figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import numpy as np
from cnntrain.backend import keras
from cnntrain.data.rows import Rows, HEADER_BYTES
from cnntrain.assess.evaluate import evaluate_model
path, n, side, tta = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
x = Rows(path, HEADER_BYTES, (n, side, side, 3))
keras.utils.set_random_seed(1)
model = keras.Sequential([keras.Input((side, side, 3)), keras.layers.Rescaling(1 / 255),
                          keras.layers.Conv2D(4, 3, strides=2), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(10, activation="softmax")])
start = time.perf_counter()
figures = evaluate_model(model, {}, x, np.arange(n) % 10, tta=tta)
print(json.dumps({"seconds": time.perf_counter() - start, "loss": figures["loss"],
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def cache_file(folder: str, n: int, side: int) -> str:
    """A .npy of n random images as the decoded-image cache writes it (rows.Writer), made once."""
    import numpy as np

    from cnntrain.data.rows import Writer

    path = os.path.join(folder, f"evaluate-views-{n}x{side}.npy")
    if not os.path.exists(path):
        writer, rng = Writer(path + ".tmp", (n, side, side, 3)), np.random.default_rng(0)
        for lo in range(0, n, 1000):
            writer.put(lo, rng.integers(0, 256, (min(1000, n - lo), side, side, 3), dtype=np.uint8))
        writer.close()
        os.rename(path + ".tmp", path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--tta", default="flip")
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()
    print("| images | tta | seconds | peak RSS | loss |\n| --- | --- | --- | --- | --- |")
    for n in (args.small, args.images):
        path = cache_file(args.dir, n, args.size)
        for tta in ("none", args.tta):
            done = subprocess.run([sys.executable, "-c", CHILD, path, str(n), str(args.size), tta],
                                  capture_output=True, text=True, check=True)
            got = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {n:,} ({n * args.size * args.size * 3 / 2**20:,.0f} MiB) | {tta} | {got['seconds']:.1f} "
                  f"| {got['peak_mib']:,.0f} MiB | {got['loss']:.6f} |", flush=True)


if __name__ == "__main__":
    main()

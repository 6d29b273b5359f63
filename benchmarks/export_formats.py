"""The export formats side by side on the same images: size, single-image latency, agreement, accuracy.

    python benchmarks/export_formats.py [RUN | MODEL.keras] [--data-dir DIR] [--images 10000] [--rounds 300]

Without RUN it first trains configs/mnist.yaml for one epoch on 6,000 MNIST training images
(`cnntrain fit`, into a temporary folder). Then it exports the model in every format and
quantization with cnntrain's own export_model (which checks each file on the test split),
and times one single-image prediction of every file, the .keras model included, round by
round: each round gives every model the same test image, in a rotating order, so machine load
falls on all of them alike. It reports the median per model and its ratio to Keras.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EXPORTS = [("savedmodel", "none"), ("onnx", "none"), ("tflite", "none"), ("tflite", "float16"),
           ("tflite", "dynamic"), ("tflite", "int8")]
ROOT = Path(__file__).resolve().parent.parent


def train(folder: Path, data_dir: str) -> Path:
    run = folder / "run"
    subprocess.run([sys.executable, "-m", "cnntrain", "fit", str(ROOT / "configs" / "mnist.yaml"), "--data-dir",
                    data_dir, "--epochs", "1", "--set", "data.limit_train=6000", "--out", str(run), "--quiet"],
                   check=True)
    return run


def interleaved_latency(runners: dict, images: np.ndarray, rounds: int) -> dict:
    """Median milliseconds of one single-image predict per runner, the runners taking turns."""
    names = list(runners)
    times = {n: [] for n in names}
    for n in names:   # warm-up
        for i in range(5):
            runners[n].predict(images[i:i + 1])
    for r in range(rounds):
        image = images[r % len(images)][np.newaxis]
        for n in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runners[n].predict(image)
            times[n].append(time.perf_counter() - start)
    return {n: statistics.median(t) * 1000 for n, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help="a run folder or .keras file (default: train one)")
    parser.add_argument("--data-dir", default=os.environ.get("CNNTRAIN_DATA_DIR", "/work/shared/data"))
    parser.add_argument("--images", type=int, default=10_000, help="check images (test split)")
    parser.add_argument("--rounds", type=int, default=300, help="single-image predictions per model")
    parser.add_argument("--json", dest="json_path", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    from cnntrain.export import check, export_model
    from cnntrain.loading import runners
    from cnntrain.loading.resolve import resolve

    with tempfile.TemporaryDirectory(prefix="cnntrain-export-bench-") as tmp:
        tmp = Path(tmp)
        target = Path(args.target) if args.target else train(tmp, args.data_dir)
        rows, loaded = [], {}
        for fmt, quantize in EXPORTS:
            start = time.perf_counter()
            result = export_model(str(target), fmt=fmt, quantize=quantize, out=tmp / f"{fmt}-{quantize}",
                                  data_dir=args.data_dir, check_samples=args.images, latency_runs=20)
            seconds = time.perf_counter() - start
            rows.append({"format": fmt, "quantize": quantize, "size_bytes": result["size_bytes"],
                         "export_s": seconds, **{k: result["check"][k] for k in (
                             "images", "agreement", "disagreements", "max_abs_diff", "accuracy", "accuracy_drop")},
                         "passed": result["passed"]})
            loaded[f"{fmt}-{quantize}"] = runners.load(resolve(result["file"]), unsafe=True)   # our own export
            keras_size, keras_accuracy = result["keras_size_bytes"], result["check"]["keras_accuracy"]
            model_file = result["model"]
        keras_runner = runners.KerasRunner(Path(model_file))
        images, _, _ = check.dataset_images(keras_runner.metadata, "test", class_names=keras_runner.class_names,
                                            data_dir=args.data_dir, limit=64)
        latency = interleaved_latency({"keras": keras_runner, **loaded}, images, args.rounds)

    print(f"model {model_file}: {keras_size:,} bytes, test accuracy {keras_accuracy:.2%} on {rows[0]['images']:,} "
          f"images; CPU cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print(f"single-image latency: median of {args.rounds} predict calls per model, taking turns\n")
    header = ("format", "quantize", "size", "vs .keras", "latency ms", "vs keras", "agreement", "max |dp|",
              "accuracy", "drop (points)", "export s")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    print(" | ".join(["keras", "-", f"{keras_size:,}", "1.00", f"{latency['keras']:.3f}", "1.00", "-", "-",
                      f"{keras_accuracy:.2%}", "-", "-"]))
    for row in rows:
        ms = latency[f"{row['format']}-{row['quantize']}"]
        row["latency_ms"] = ms
        print(" | ".join([row["format"], row["quantize"], f"{row['size_bytes']:,}",
                          f"{row['size_bytes'] / keras_size:.2f}", f"{ms:.3f}", f"{ms / latency['keras']:.2f}",
                          f"{row['agreement']:.2%}", f"{row['max_abs_diff']:.1e}", f"{row['accuracy']:.2%}",
                          f"{row['accuracy_drop'] * 100:.2f}", f"{row['export_s']:.1f}"]))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"model": model_file, "keras_size_bytes": keras_size,
                                                    "keras_latency_ms": latency["keras"], "rows": rows}, indent=2))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

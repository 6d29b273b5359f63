"""What a pretrained backbone buys on a small data set, measured without the internet.

    python benchmarks/transfer.py [--data /work/bg/data/cifar10-jpeg] [--pretrain-per-class 3000]
                                  [--pretrain-epochs 8] [--per-class 100] [--epochs 30]
                                  [--fine-tune-at 10] [--seed 1 --seed 2 ...] [--out DIR]

A MobileNet (v1, alpha 0.5, 32x32 CIFAR-10 images, batches of 32) is trained by `cnntrain fit`
from random weights on 3,000 images of each of five CIFAR-10 classes (airplane, automobile, bird,
cat, deer); its backbone's weights are saved as a .weights.h5 file. Then, for each seed, the
same spec is trained on 100 images per class of the other five classes (dog, frog, horse, ship,
truck) twice: "pretrained" from those weights (`weights: FILE`), the backbone frozen until
--fine-tune-at and then fine-tuned whole at a tenth of the rate (`fit.fine_tune`); "random" from
random weights (`weights: null`), trained whole from the first epoch at the spec's rate (a frozen
random backbone would learn nothing). Same epochs, same seed. Test accuracy on those five
classes' 5,000 test images and the wall time of each fit, the mean and spread over the seeds,
side by side, in DIR/transfer.json.

Not MobileNetV2: its BatchNormalization layers keep their moving statistics with momentum 0.999,
which a short fit from random weights leaves far from the data's (8 epochs of 15,000 images: 55%
training accuracy, every test image one class, 20%); MobileNet's use Keras' 0.99.

The data is a CIFAR-10 JPEG tree (train/<class>/*.jpg, test/<class>/*.jpg); the subsets are
folders of symbolic links under DIR, read as `image_folder`. A fit whose result is already in
DIR (DIR/<run>.json, written once the fit ended) is not run again, so a killed benchmark goes on
where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # cpu_speed's CPU facts
from cpu_speed import cpu_facts

SOURCE = ["airplane", "automobile", "bird", "cat", "deer"]
TARGET = ["dog", "frog", "horse", "ship", "truck"]
LEARNING_RATE = 0.001
SPEC = """\
name: {name}
seed: {seed}
data: {{dataset: image_folder, path: {path}, validation: none}}
preprocess: {{normalize: none}}
augment:
  - RandomFlip: {{mode: horizontal}}
  - RandomTranslation: {{height_factor: 0.1, width_factor: 0.1}}
model:
  input_shape: [32, 32, 3]
  layers:
    - MobileNet: {{include_top: false, weights: {weights}, alpha: 0.5, pooling: avg}}
    - Dropout: 0.2
    - Dense: {{units: 5, activation: softmax}}
compile:
  optimizer: {{Adam: {{learning_rate: {rate}}}}}
fit: {{batch_size: 32, epochs: {epochs}{fine_tune}}}
"""


def subset(data: Path, classes, per_class: int | None, out: Path) -> Path:
    """train/ (the first `per_class` images of each class; None: all) and all of test/, as links."""
    for split in ("train", "test"):
        for cls in classes:
            files = sorted((data / split / cls).glob("*.jpg"))
            if not files:
                raise SystemExit(f"no {split}/{cls}/*.jpg in {data}: expected a CIFAR-10 JPEG tree")
            if split == "train" and per_class is not None:
                files = files[:per_class]
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for f in files:
                link = folder / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    return out


def fit(out: Path, name: str, path: Path, weights: str, epochs: int, seed: int, fine_tune_at: int | None = None
        ) -> dict:
    done = out / f"{name}.json"
    if done.exists():
        return json.loads(done.read_text())
    tune = "" if fine_tune_at is None else (f", fine_tune: {{at_epoch: {fine_tune_at}, "
                                            f"learning_rate: {LEARNING_RATE / 10}, layers: all}}")
    spec = out / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, seed=seed, path=path, weights=weights, epochs=epochs,
                                rate=LEARNING_RATE, fine_tune=tune))
    run = out / name
    if run.exists():   # a fit killed before its result: start it again
        subprocess.run(["rm", "-rf", str(run)], check=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnntrain", "fit", str(spec), "--out", str(run), "--quiet"], check=True)
    seconds = time.perf_counter() - started
    test = json.loads((run / "metrics.json").read_text())["test"]
    result = {"run": str(run), "seed": seed, "seconds": round(seconds, 1), "test_accuracy": test["accuracy"]}
    done.with_suffix(".part").write_text(json.dumps(result, indent=2) + "\n")
    os.replace(done.with_suffix(".part"), done)   # whole or absent
    return result


def backbone_weights(run: Path, out: Path) -> Path:
    """The pretrained run's backbone (its nested model) saved alone, as `weights: FILE` loads it."""
    import keras

    path = out / "backbone.weights.h5"
    if not path.exists():
        model = keras.models.load_model(run / "model.keras")
        backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        backbone.save_weights(out / "backbone.part.weights.h5")
        os.replace(out / "backbone.part.weights.h5", path)
    return path


def summary(runs: list[dict]) -> dict:
    """Mean and spread (sample standard deviation, min, max) of the runs' accuracy and time."""
    accuracy = [r["test_accuracy"] for r in runs]
    seconds = [r["seconds"] for r in runs]
    return {"test_accuracy_mean": statistics.fmean(accuracy),
            "test_accuracy_std": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
            "test_accuracy_min": min(accuracy), "test_accuracy_max": max(accuracy),
            "seconds_mean": statistics.fmean(seconds), "runs": runs}


def line(name: str, side: dict) -> str:
    each = ", ".join(f"{r['test_accuracy']:.2%}" for r in side["runs"])
    return (f"{name:>10}: test accuracy {side['test_accuracy_mean']:.2%} +/- {side['test_accuracy_std']:.2%} "
            f"(seeds: {each}) in {side['seconds_mean']:.0f} s a fit")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/bg/data/cifar10-jpeg")
    parser.add_argument("--pretrain-per-class", type=int, default=3000, help="0: all 5,000")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fine-tune-at", type=int, default=10, help="the pretrained side's fit.fine_tune.at_epoch")
    parser.add_argument("--seed", type=int, action="append", help="repeatable; default: 1, 2, 3")
    parser.add_argument("--out", default="transfer-benchmark")
    args = parser.parse_args(argv)
    args.seed = args.seed or [1, 2, 3]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    source = subset(data, SOURCE, args.pretrain_per_class or None, out / "source-data")
    target = subset(data, TARGET, args.per_class, out / "target-data")
    result = {"pretrain": fit(out, "pretrain", source, "null", args.pretrain_epochs, seed=7)}
    print(f"  pretrain: test accuracy {result['pretrain']['test_accuracy']:.2%} on the five source classes "
          f"in {result['pretrain']['seconds']:.0f} s", flush=True)
    weights = backbone_weights(Path(result["pretrain"]["run"]), out)
    sides = {"pretrained": [], "random": []}
    for seed in args.seed:   # the sides take turns, so a change of the machine's load meets both
        sides["pretrained"].append(fit(out, f"pretrained-{seed}", target, str(weights), args.epochs, seed,
                                       args.fine_tune_at))
        sides["random"].append(fit(out, f"random-{seed}", target, "null", args.epochs, seed))
    result |= {key: summary(runs) for key, runs in sides.items()}
    facts = cpu_facts()
    result["settings"] = vars(args) | {"cpu": {**facts, "flags": sorted(facts["flags"])}}
    (out / "transfer.part.json").write_text(json.dumps(result, indent=2) + "\n")
    os.replace(out / "transfer.part.json", out / "transfer.json")
    for key in ("pretrained", "random"):
        print(line(key, result[key]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a pretrained backbone buys on a small data set, measured without the internet.

    python benchmarks/transfer.py [--data /work/bg/data/cifar10-jpeg] [--pretrain-per-class 5000]
                                  [--per-class 100] [--epochs 20] [--pretrain-epochs 20] [--out DIR]

A MobileNetV2 (alpha 0.35, 32x32 CIFAR-10 images) is trained by `cnntrain fit` on five CIFAR-10
classes (airplane, automobile, bird, cat, deer); its backbone's weights are saved as a
.weights.h5 file. The same spec is then trained on 100 images per class of the other five
classes (dog, frog, horse, ship, truck) twice, same seed: from those weights (`weights: FILE`)
and from random weights (`weights: null`). Test accuracy on those five classes' 5,000 test
images and the wall time of each fit, side by side, in DIR/transfer.json.

The data is a CIFAR-10 JPEG tree (train/<class>/*.jpg, test/<class>/*.jpg); the subsets are
folders of symbolic links under DIR, read as `image_folder`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # cpu_speed's CPU facts
from cpu_speed import cpu_facts

SOURCE = ["airplane", "automobile", "bird", "cat", "deer"]
TARGET = ["dog", "frog", "horse", "ship", "truck"]
SPEC = """\
name: {name}
seed: 7
data: {{dataset: image_folder, path: {path}, validation: none}}
preprocess: {{normalize: none}}
augment:
  - RandomFlip: {{mode: horizontal}}
  - RandomTranslation: {{height_factor: 0.1, width_factor: 0.1}}
model:
  input_shape: [32, 32, 3]
  layers:
    - MobileNetV2: {{include_top: false, weights: {weights}, alpha: 0.35, pooling: avg}}
    - Dropout: 0.2
    - Dense: {{units: 5, activation: softmax}}
compile:
  optimizer: {{Adam: {{learning_rate: 0.001}}}}
fit: {{batch_size: 64, epochs: {epochs}}}
"""


def subset(data: Path, classes, per_class: int | None, out: Path) -> Path:
    """train/ (the first `per_class` images of each class; None: all) and all of test/, as links."""
    for split in ("train", "test"):
        for cls in classes:
            files = sorted((data / split / cls).glob("*.jpg"))
            if split == "train" and per_class is not None:
                files = files[:per_class]
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for f in files:
                link = folder / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    return out


def fit(out: Path, name: str, path: Path, weights: str, epochs: int) -> dict:
    spec = out / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, path=path, weights=weights, epochs=epochs))
    run = out / name
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnntrain", "fit", str(spec), "--out", str(run), "--quiet"], check=True)
    seconds = time.perf_counter() - started
    test = json.loads((run / "metrics.json").read_text())["test"]
    return {"run": str(run), "seconds": round(seconds, 1), "test_accuracy": test["accuracy"]}


def backbone_weights(run: Path, out: Path) -> Path:
    """The pretrained run's backbone (its nested model) saved alone, as `weights: FILE` loads it."""
    import keras

    model = keras.models.load_model(run / "model.keras")
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    path = out / "backbone.weights.h5"
    backbone.save_weights(path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/bg/data/cifar10-jpeg")
    parser.add_argument("--pretrain-per-class", type=int, default=None, help="default: all 5,000")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="transfer-benchmark")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    source = subset(data, SOURCE, args.pretrain_per_class, out / "source-data")
    target = subset(data, TARGET, args.per_class, out / "target-data")
    result = {"pretrain": fit(out, "pretrain", source, "null", args.pretrain_epochs)}
    weights = backbone_weights(Path(result["pretrain"]["run"]), out)
    result["pretrained"] = fit(out, "pretrained", target, str(weights), args.epochs)
    result["random"] = fit(out, "random", target, "null", args.epochs)
    result["settings"] = vars(args) | {"cpu": cpu_facts()}
    (out / "transfer.json").write_text(json.dumps(result, indent=2) + "\n")
    for key in ("pretrained", "random"):
        print(f"{key:>10}: test accuracy {result[key]['test_accuracy']:.2%} in {result[key]['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

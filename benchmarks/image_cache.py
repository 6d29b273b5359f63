"""Your own images at size: images streamed from the decoded-image cache against held in memory.

    python benchmarks/image_cache.py [--source /work/bg/data/cifar10-jpeg/train] [--images 100000]
                                     [--small 10000] [--size 128] [--cifar /work/bg/data/cifar10-jpeg]
                                     [--cifar-epochs 3] [--rounds 2] [--out DIR]

Writes a folder of --images photos (--source's JPEGs, cycled, upscaled to --size px and re-encoded
as JPEG; without --source, smooth random pictures; kept in --out for the next run), then, each a
fresh child process, one after the other:

  first decode   load_dataset, data.cache: disk, an empty cache: the decode on every core, written
                 block by block into the cache file; images/s
  cache hit      the same again: the second fit's data-loading time
  fit, large     cnntrain fit, 1 epoch, validation none, data.cache: disk (a warm cache): batches read
                 from the cache file; peak RSS (the kernel's ru_maxrss) and training images/s
  fit, small     the same fit on the first --small images: its peak RSS against the large one's
  CIFAR-10       the --cifar folder (train/ and test/ of 32 px JPEGs): --cifar-epochs streamed
                 (data.cache: disk) and in memory (data.cache: memory), --rounds of each taking
                 turns; the median training images/s (the tracing epoch untimed)

--images 0 leaves the photos out, no --cifar the CIFAR-10 fits.

The ratios compare rows of this one run. On a shared machine times vary with the load, peak RSS
hardly. The cache is a temporary folder ($CNNTRAIN_CACHE_DIR), removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_speed import cpu_facts
from peak_memory import ROOT, peak_rss

SPEC = """\
name: image_cache
data: {{dataset: image_folder, path: {path}, image_size: [{size}, {size}], validation: none, cache: {cache}}}
preprocess: {{normalize: scale}}
model:
  layers:
    - Conv2D: {{filters: 16, kernel_size: 3, strides: 4}}
    - Activation: relu
    - GlobalAveragePooling2D
    - Dense: {{units: {classes}, activation: softmax}}
fit: {{epochs: {epochs}, batch_size: 256}}
"""
LOAD = ("import sys, time; from cnntrain.data import load_dataset; t = time.perf_counter(); "
        "d = load_dataset('image_folder', path=sys.argv[1], image_size=({size}, {size}), cache=sys.argv[2]); "
        "print(len(d.x_train), time.perf_counter() - t)")


def photos(folder: Path, count: int, size: int, source: str | None) -> int:
    """`count` JPEGs of size x size in folder/<class>/; returns the number of classes."""
    if source:
        classes = sorted(p.name for p in Path(source).iterdir() if p.is_dir())
        files = [sorted((Path(source) / c).glob("*.jpg")) for c in classes]
    else:
        classes = [f"c{i}" for i in range(10)]
    rng = np.random.default_rng(0)
    for i in range(count):
        c = i % len(classes)
        target = folder / classes[c] / f"{i:07d}.jpg"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source:
            im = Image.open(files[c][(i // len(classes)) % len(files[c])]).convert("RGB")
        else:
            im = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        im.resize((size, size), Image.Resampling.BICUBIC).save(target, quality=90)
    return len(classes)


def load_time(path: Path, size: int, cache: str, log: Path) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", LOAD.format(size=size), str(path), cache], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    log.write_text(out.stdout + out.stderr)
    count, seconds = out.stdout.split()
    return int(count), float(seconds)


def fit(spec: Path, run: Path, log: Path) -> tuple[float, float | None]:
    rss, _anon, _wall, status = peak_rss([sys.executable, "-m", "cnntrain", "fit", str(spec), "--out", str(run),
                                         "--quiet"], 24 * 3600, log)
    if status:
        raise SystemExit(f"fit failed ({status}); see {log}")
    metrics = json.loads((run / "metrics.json").read_text())
    return rss, metrics.get("train_images_per_s")


def photo_rows(args, big: Path, small: Path, tmp: Path) -> list:
    """The first decode, the cache hit, and peak RSS of a streamed fit at --images and --small photos."""
    classes = photos(big, args.images, args.size, args.source)
    small.mkdir()
    for c in sorted(p.name for p in big.iterdir() if p.is_dir()):
        (small / c).mkdir()
        for f in sorted((big / c).iterdir())[:args.small // classes]:
            os.symlink(f, small / c / f.name)
    print(f"{args.images:,} photos of {args.size}x{args.size} in {big}", flush=True)
    n, first = load_time(big, args.size, "disk", tmp / "first.log")
    print(f"  first decode {first:.1f} s", flush=True)
    _, hit = load_time(big, args.size, "disk", tmp / "hit.log")
    rows = [("first decode (into the cache file)", f"{first:8.1f} s", f"{n / first:,.0f} images/s"),
            ("cache hit (second load)", f"{hit:8.2f} s", f"{first / hit:,.0f}x faster than the first")]
    figures = {}
    for name, folder in (("large", big), ("small", small)):
        spec = tmp / f"{name}.yaml"
        spec.write_text(SPEC.format(path=folder, size=args.size, cache="disk", classes=classes, epochs=args.epochs))
        if name == "small":   # warm the cache, so the fit measured is a later one
            load_time(folder, args.size, "disk", tmp / f"warm-{name}.log")
        figures[name] = fit(spec, tmp / f"run-{name}", tmp / f"fit-{name}.log")
        print(f"  fit {name}: {figures[name][0]:.0f} MiB, {figures[name][1] or 0:.0f} images/s", flush=True)
    (rss_l, ips_l), (rss_s, _) = figures["large"], figures["small"]
    return rows + [(f"fit streamed, {n:,} images: peak RSS", f"{rss_l:8.0f} MiB", f"{rss_l / rss_s:.2f}x the small fit's"),
                   (f"fit streamed, {args.small:,} images: peak RSS", f"{rss_s:8.0f} MiB", ""),
                   (f"fit streamed, {n:,} images: training", f"{ips_l or 0:8.0f} img/s", "")]


def cifar_rows(args, folder: Path, tmp: Path) -> list:
    """Training images/s streamed from the cache file against in memory: --rounds fits of each, taking
    turns (the machine's load moves in between), --cifar-epochs each (the tracing epoch untimed)."""
    load_time(folder, 32, "disk", tmp / "warm-cifar.log")   # the cache warm: both fits read it
    got = {"disk": [], "memory": []}
    for r in range(args.rounds):
        for cache in ("disk", "memory"):
            spec = tmp / f"cifar-{cache}.yaml"
            spec.write_text(SPEC.format(path=folder, size=32, cache=cache, classes=10, epochs=args.cifar_epochs))
            got[cache].append(fit(spec, tmp / f"run-cifar-{cache}-{r}", tmp / f"fit-cifar-{cache}-{r}.log"))
            print(f"  CIFAR-10 {cache} round {r + 1}: {got[cache][-1][0]:.0f} MiB, "
                  f"{got[cache][-1][1] or 0:.0f} images/s", flush=True)
    (rss_d, ips_d), (rss_m, ips_m) = ((statistics.median(f[0] for f in got[c]), statistics.median(f[1] or 0 for f in got[c]))
                                      for c in ("disk", "memory"))
    return [("CIFAR-10 streamed (disk): training", f"{ips_d:8.0f} img/s",
             f"{ips_d / (ips_m or 1):.2f}x in memory; peak RSS {rss_d:.0f} MiB"),
            ("CIFAR-10 in memory: training", f"{ips_m:8.0f} img/s", f"peak RSS {rss_m:.0f} MiB")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", help="a folder of <class>/*.jpg (e.g. the CIFAR-10 JPEG train folder)")
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--small", type=int, default=10_000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--cifar", help="a CIFAR-10 JPEG folder (train/, test/): streamed against in-memory training")
    p.add_argument("--cifar-epochs", type=int, default=3, help="epochs of each CIFAR-10 fit (the first, tracing, "
                                                                "is not timed)")
    p.add_argument("--rounds", type=int, default=2, help="CIFAR-10 fits of each kind, taking turns; the median")
    p.add_argument("--out", help="where the photos are written (kept for another run); default a temporary folder")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = Path(args.out) if args.out else tmp / "photos"
        small = tmp / "small"
        os.environ["CNNTRAIN_CACHE_DIR"] = str(tmp / "cache")
        facts = cpu_facts()
        print(f"CPU: {facts['name']}, {facts['cores']} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
        rows = []
        if args.images:
            rows += photo_rows(args, big, small, tmp)
        if args.cifar:
            rows += cifar_rows(args, Path(args.cifar), tmp)
        width = max(len(r[0]) for r in rows)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        for label, value, ratio in rows:
            print(f"{label:<{width}}  {value}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

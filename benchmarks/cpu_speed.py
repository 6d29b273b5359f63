"""Training speed of a recipe per CPU setting, side by side: precision, threads, batch size.

    python benchmarks/cpu_speed.py [--config configs/cifar10_fast.yaml] [--images 6000] [--rounds 3]
                                   [--side fp32 --side bf16 ...] [--data-dir DIR]
    python benchmarks/cpu_speed.py --config configs/mnist_fast.yaml --side fp32 --side bf16 --side fp32:b1024

A side is PRECISION[:bBATCH][:tTHREADS]: fp32 or bf16 (`fit --mixed-precision`: mixed_bfloat16 on
a CPU), the batch size (default: the spec's), the intra-op threads (default: TensorFlow's, one per
core). Each side is one real `cnntrain fit` of the config on the first --images training images
(no validation, 3 epochs), in a fresh process, so that threads and precision are set as a user's
fit sets them. The sides take turns round by round (A B C, then C B A, ...); a side's figure is the
median over rounds of its steady epochs (all but the first, which traces the step), from the run's
history.csv. A shared machine moves absolute figures; the ratio to the first side moves less.

It prints images/s, the ratio to the first side, and the FLOP rate: `cnntrain summary`'s training
FLOPs per image (6 x the multiply-accumulates of a forward pass) x images/s, against this CPU's
peak: cores x clock x FLOPs per cycle per core, 64 for float32 with AVX-512 (two FMA units x 16
lanes x 2), 1,024 for bfloat16 where the CPU has AMX tiles, 128 with AVX512_BF16 alone. The clock
is /proc/cpuinfo's (a VM's nominal figure), so the fraction of peak is an estimate, not a count.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EPOCHS = 3


def cpu_facts() -> dict:
    """Model name, cores, clock (MHz) and the vector/matrix units /proc/cpuinfo names."""
    facts = {"name": "unknown CPU", "mhz": None, "flags": set(), "cores": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                facts["name"] = value.strip()
            elif key == "cpu MHz" and facts["mhz"] is None:
                facts["mhz"] = float(value)
            elif key == "flags":
                facts["flags"] = set(value.split())
    except OSError:
        pass
    return facts


def peak_flops(facts: dict, precision: str) -> float | None:
    """Peak FLOP/s of the CPU for `precision` (an upper bound: all cores at the nominal clock)."""
    if not facts["mhz"]:
        return None
    flags = facts["flags"]
    if precision == "bf16" and "amx_bf16" in flags:
        per_cycle = 1024       # one AMX TMUL: 16 x 32 bf16 multiply-adds per cycle
    elif precision == "bf16" and "avx512_bf16" in flags:
        per_cycle = 128        # VDPBF16PS: 32 bf16 pairs per instruction, two FMA units
    elif "avx512f" in flags:
        per_cycle = 64         # two 512-bit FMA units x 16 float32 lanes x 2 FLOPs
    elif "avx2" in flags:
        per_cycle = 32
    else:
        return None
    return facts["cores"] * facts["mhz"] * 1e6 * per_cycle


def train_flops_per_image(spec) -> float:
    """`cnntrain summary`'s training FLOPs for one image: 6 x the MACs of a forward pass."""
    from cnntrain.insight import layers
    from cnntrain.model import build

    return layers.totals(layers.describe(build.build_model(spec)), train_images=1)["train_flops_per_epoch"]


def parse_side(text: str) -> dict:
    parts = text.split(":")
    if parts[0] not in ("fp32", "bf16"):
        raise SystemExit(f"side {text!r}: the precision must be fp32 or bf16")
    side = {"name": text, "precision": parts[0], "batch": None, "threads": None}
    for part in parts[1:]:
        if part[:1] == "b" and part[1:].isdigit():
            side["batch"] = int(part[1:])
        elif part[:1] == "t" and part[1:].isdigit():
            side["threads"] = int(part[1:])
        else:
            raise SystemExit(f"side {text!r}: expected :bBATCH or :tTHREADS, got {part!r}")
    return side


def worker(args) -> int:
    """One side: a real fit in this process; prints one JSON line."""
    from cnntrain.spec import load_spec
    from cnntrain.train.fit import FitOptions, fit
    from cnntrain.views import reporter

    side = json.loads(args.worker)
    overrides = ["data.validation=none", f"data.limit_train={args.images}", "data.limit_test=100",
                 f"fit.epochs={EPOCHS}", *args.set]
    if side["batch"]:
        overrides.append(f"fit.batch_size={side['batch']}")
    spec = load_spec(args.config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        options = FitOptions(data_dir=args.data_dir, offline=True, out=str(Path(tmp) / "run"), device="cpu",
                             mixed_precision=side["precision"] == "bf16", threads=side["threads"])
        run_dir = fit(spec, options, reporter.Reporter("quiet"))
        with open(run_dir / "history.csv", newline="") as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    print("RESULT " + json.dumps({"seconds": seconds[1:], "flops_per_image": train_flops_per_image(spec)}),
          flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cifar10_fast.yaml")
    parser.add_argument("--side", action="append", default=[], help="PRECISION[:bBATCH][:tTHREADS] (repeat)")
    parser.add_argument("--images", type=int, default=6000, help="training images per epoch (default 6000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    sides = [parse_side(s) for s in (args.side or ["fp32", "bf16"])]
    facts = cpu_facts()
    print(f"{facts['name']}, {facts['cores']} cores, {facts['mhz'] or '?'} MHz, "
          f"{'AMX ' if 'amx_bf16' in facts['flags'] else ''}"
          f"{'AVX512_BF16 ' if 'avx512_bf16' in facts['flags'] else ''}; {args.config}; "
          f"{args.images} images x {EPOCHS} epochs per fit, {args.rounds} rounds", flush=True)
    results = {s["name"]: [] for s in sides}
    flops = {}
    for round_ in range(args.rounds):
        order = sides if round_ % 2 == 0 else sides[::-1]
        for side in order:
            command = [sys.executable, __file__, "--config", args.config, "--images", str(args.images),
                       "--data-dir", args.data_dir, "--worker", json.dumps(side)]
            for item in args.set:
                command += ["--set", item]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode != 0 or not line:
                print(done.stdout[-2000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
                return 1
            result = json.loads(line[-1][7:])
            results[side["name"]] += result["seconds"]
            flops[side["name"]] = result["flops_per_image"]
            print(f"  round {round_ + 1} {side['name']}: "
                  + ", ".join(f"{args.images / s:,.0f}" for s in result["seconds"]) + " images/s", flush=True)
    print()
    print("| side | images/s | ratio | GFLOP/s | of peak |")
    print("| --- | --- | --- | --- | --- |")
    first = None
    for side in sides:
        rate = args.images / statistics.median(results[side["name"]])
        first = first or rate
        gflops = rate * flops[side["name"]] / 1e9
        peak = peak_flops(facts, side["precision"])
        share = f"{gflops * 1e9 / peak:.1%} of {peak / 1e9:,.0f}" if peak else "-"
        print(f"| {side['name']} | {rate:,.0f} | {rate / first:.2f} | {gflops:,.0f} | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

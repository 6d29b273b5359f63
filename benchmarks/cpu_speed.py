"""Training speed of recipes per CPU setting, side by side: precision, threads, batch size, airbench.

    python benchmarks/cpu_speed.py [--config configs/cifar10_fast.yaml ...] [--images 6000] [--rounds 3]
                                   [--side fp32 --side bf16 ...] [--data-dir DIR]
    python benchmarks/cpu_speed.py --config configs/mnist_fast.yaml --side fp32 --side bf16 --side fp32:b1024
    python benchmarks/cpu_speed.py --side auto --side airbench-fp32 --torch-python /work/venvs/torch/bin/python

A side is PRECISION[:bBATCH][:tTHREADS]: fp32 (fit.precision float32), bf16 (`fit --mixed-precision`:
mixed_bfloat16 on a CPU) or auto (the spec's own fit.precision), the batch size (default: the
spec's), the intra-op threads (default: TensorFlow's, one per core). Each side is one real
`cnntrain fit` of each --config on the first --images training images (no validation, 3 epochs),
in a fresh process, so that threads and precision are set as a user's fit sets them.
`airbench-fp32` and `airbench-bf16` (with :tTHREADS) are the yardstick instead: the airbench94
port (benchmarks/reference/airbench94_torch.py, its own batch of 1,024, Lookahead and loader
included) training on the same first images of the same CIFAR-10 JPEGs for 3 epochs, run by
--torch-python, a Python that has PyTorch (cnntrain does not install it).
The sides take turns round by round (A B C, then C B A, ...); a side's figure is the median over
rounds of its steady epochs (all but the first, which traces the step), from the run's history.csv.
A shared machine moves absolute figures; the ratio to the first side moves less, so each row also
shows its per-round ratios to the first row, whose spread is the noise of that comparison. The load
average is printed before and after.

It prints images/s, the ratio to the first side, and the FLOP rate: `cnntrain summary`'s training
FLOPs per image (6 x the multiply-accumulates of a forward pass) x images/s, against this CPU's
peak: cores x clock x FLOPs per cycle per core, 64 for float32 with AVX-512 (two FMA units x 16
lanes x 2), 1,024 for bfloat16 where the CPU has AMX tiles, 128 with AVX512_BF16 alone. The clock
is /proc/cpuinfo's (a VM's nominal figure), so the fraction of peak is an estimate, not a count;
a core is a vCPU, which on a VM may be half of a physical core shared with another vCPU.
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


AIRBENCH = ROOT / "benchmarks" / "reference" / "airbench94_torch.py"


def parse_side(text: str) -> dict:
    parts = text.split(":")
    airbench = parts[0].startswith("airbench-")
    precision = parts[0].removeprefix("airbench-")
    if precision not in ("fp32", "bf16") and not (precision == "auto" and not airbench):
        raise SystemExit(f"side {text!r}: the precision must be fp32, bf16 or auto (airbench-fp32 or airbench-bf16)")
    side = {"name": text, "precision": precision, "batch": None, "threads": None, "airbench": airbench}
    for part in parts[1:]:
        if part[:1] == "b" and part[1:].isdigit() and not airbench:
            side["batch"] = int(part[1:])
        elif part[:1] == "t" and part[1:].isdigit():
            side["threads"] = int(part[1:])
        else:
            raise SystemExit(f"side {text!r}: expected :bBATCH or :tTHREADS (airbench: :tTHREADS), got {part!r}")
    return side


def precision_used(policy: str) -> str:
    """env.json's policy as a side's precision: bf16 where the policy computes in bfloat16."""
    return "bf16" if "bfloat16" in policy else "fp32"


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
    if side["precision"] == "fp32":
        overrides.append("fit.precision=float32")
    spec = load_spec(args.config[0], overrides)
    with tempfile.TemporaryDirectory() as tmp:
        options = FitOptions(data_dir=args.data_dir, offline=True, out=str(Path(tmp) / "run"), device="cpu",
                             mixed_precision=side["precision"] == "bf16", threads=side["threads"])
        run_dir = fit(spec, options, reporter.Reporter("quiet"))
        with open(run_dir / "history.csv", newline="") as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
        policy = json.loads((run_dir / "env.json").read_text())["precision"]
    print("RESULT " + json.dumps({"seconds": seconds[1:], "flops_per_image": train_flops_per_image(spec),
                                  "images": args.images, "precision": precision_used(policy)}), flush=True)
    return 0


def side_command(args, side: dict, config: str | None) -> list[str]:
    """The process that runs one side once: a cnntrain worker, or the airbench port under --torch-python."""
    if side["airbench"]:
        if not args.torch_python:
            raise SystemExit(f"side {side['name']!r}: needs --torch-python, a Python with PyTorch")
        folder = Path(args.data_dir) / "cifar10-jpeg"
        command = [args.torch_python, str(AIRBENCH), "--data-dir", str(folder if folder.is_dir() else args.data_dir),
                   "--bench-images", str(args.images), "--epochs", str(EPOCHS)]
        if side["threads"]:
            command += ["--threads", str(side["threads"])]
        return command + (["--bf16"] if side["precision"] == "bf16" else [])
    command = [sys.executable, __file__, "--config", config, "--images", str(args.images),
               "--data-dir", args.data_dir, "--worker", json.dumps(side)]
    for item in args.set:
        command += ["--set", item]
    return command


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", default=[],
                        help="a config whose sides run (repeat; default configs/cifar10_fast.yaml)")
    parser.add_argument("--side", action="append", default=[],
                        help="PRECISION[:bBATCH][:tTHREADS] or airbench-PRECISION[:tTHREADS] (repeat)")
    parser.add_argument("--images", type=int, default=6000, help="training images per epoch (default 6000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--torch-python", default=None, help="a Python with PyTorch, for the airbench sides")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.config = args.config or ["configs/cifar10_fast.yaml"]
    if args.worker:
        return worker(args)
    sides = [parse_side(s) for s in (args.side or ["fp32", "bf16"])]
    # Every config with each cnntrain side, then each airbench side once: the rows that take turns.
    rows = [(c, s) for c in args.config for s in sides if not s["airbench"]] + [(None, s) for s in sides if s["airbench"]]
    facts = cpu_facts()
    units = [name for flag, name in (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512_BF16"), ("amx_bf16", "AMX"))
             if flag in facts["flags"]]
    print(f"{facts['name']}, {facts['cores']} cores, {facts['mhz'] or '?'} MHz, {' '.join(units) or 'no AVX-512'}; "
          f"{', '.join(args.config)}; {args.images} images x {EPOCHS} epochs per fit, {args.rounds} rounds; "
          f"{load()}", flush=True)
    results = {row: [] for row in range(len(rows))}
    rates = {row: [] for row in range(len(rows))}
    facts_of = {}
    for round_ in range(args.rounds):
        order = list(range(len(rows))) if round_ % 2 == 0 else list(range(len(rows)))[::-1]
        for row in order:
            config, side = rows[row]
            done = subprocess.run(side_command(args, side, config), capture_output=True, text=True, cwd=ROOT)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode != 0 or not line:
                print(done.stdout[-2000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
                return 1
            result = json.loads(line[-1][7:])
            result.setdefault("precision", side["precision"])
            results[row] += [result["images"] / s for s in result["seconds"]]
            rates[row].append(result["images"] / statistics.median(result["seconds"]))
            facts_of[row] = result
            print(f"  round {round_ + 1} {label(rows[row])}: "
                  + ", ".join(f"{rate:,.0f}" for rate in results[row][-len(result["seconds"]):]) + " images/s",
                  flush=True)
    print(f"\n{load()}\n")
    print("| config | side | images/s | ratio | per round | GFLOP/s | of peak |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row, (config, side) in enumerate(rows):
        rate = statistics.median(results[row])
        ratio = rate / statistics.median(results[0])
        per_round = " ".join(f"{r / f:.2f}" for r, f in zip(rates[row], rates[0]))
        gflops = rate * facts_of[row]["flops_per_image"] / 1e9
        peak = peak_flops(facts, facts_of[row]["precision"])
        share = f"{gflops * 1e9 / peak:.1%} of {peak / 1e9:,.0f} ({facts_of[row]['precision']})" if peak else "-"
        print(f"| {config or AIRBENCH.name} | {side['name']} | {rate:,.0f} | {ratio:.2f} | {per_round} "
              f"| {gflops:,.0f} | {share} |")
    return 0


def label(row: tuple) -> str:
    config, side = row
    return side["name"] if config is None else f"{Path(config).stem} {side['name']}"


if __name__ == "__main__":
    sys.exit(main())

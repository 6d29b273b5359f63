"""Peak resident memory (max RSS) of `cnntrain fit` on MNIST and CIFAR-10.

    python benchmarks/peak_memory.py [--data-dir /work/shared/data] [--mnist-limit 20000]
                                     [--cifar-limit 5000] [--repeat 1] [--only mnist|cifar10]

Every figure is one child process, started fresh, whose peak RSS is read from the
kernel when it exits (os.wait4's ru_maxrss: the high-water mark of the child's
resident set, what /usr/bin/time -v calls "Maximum resident set size"). Per data set:

  import       python -c "import cnntrain.backend"   (TensorFlow + Keras alone; once)
  load data    python -c "cnntrain.data.load_dataset(NAME, data_dir=...)"
               (the loader alone, no TensorFlow: the uint8 arrays of the WHOLE set)
  fit          python -m cnntrain fit configs/NAME.yaml --epochs 1
               --set data.limit_train=N --data-dir DIR --offline --quiet --out TMP

limit_train keeps the epoch short, but the loader still reads the whole data set (all
60,000 images) before the limit is applied, which is why "load data" is listed: it is
the floor under the fit figure. Augmentation, validation split and the test
evaluation at the end are those of the config, as a user gets them.

Peak RSS counts the pages of TensorFlow's shared libraries the process touched (about
375 MiB of file-backed pages after `import tensorflow`, shareable between processes),
so a second column gives the largest RssAnon, private memory only, sampled from
/proc/PID/status every 50 ms (a spike shorter than that can be missed).

With --data-dir lacking mnist.npz or cifar10-jpeg.tar.gz, random uint8 data of the same
shape is written to a temporary folder instead (MNIST as mnist.npz; CIFAR-10 as
cifar-10-batches-py python batches, a different reader from the JPEG archive), and the
table says so. Peak RSS hardly depends on a shared machine's load, but run times do.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"mnist": ROOT / "configs" / "mnist.yaml", "cifar10": ROOT / "configs" / "cifar10.yaml"}


def _sample_anon(pid: int, peak: list, stop: threading.Event, every: float = 0.05):
    """Largest RssAnon (private memory: heap, arrays, tensors) seen in /proc/PID/status."""
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
                        break
        except OSError:
            return
        stop.wait(every)


def peak_rss(cmd: list[str], timeout: float, log: Path) -> tuple[float, float, float, int]:
    """(peak RSS MiB, sampled peak RssAnon MiB, wall seconds, exit status) of `cmd` as a child."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        timer = threading.Timer(timeout, lambda: child.send_signal(signal.SIGKILL))
        anon, stop = [0], threading.Event()
        sampler = threading.Thread(target=_sample_anon, args=(child.pid, anon, stop), daemon=True)
        timer.start()
        sampler.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
        finally:
            timer.cancel()
            stop.set()
            sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
    # Linux gives ru_maxrss and RssAnon in KiB.
    return usage.ru_maxrss / 1024, anon[0] / 1024, wall, child.returncode


def fake_data(name: str, folder: Path) -> None:
    """Random uint8 data of the real shapes, in a format cnntrain reads."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "mnist":
        np.savez(folder / "mnist.npz",
                 x_train=rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
                 y_train=rng.integers(0, 10, 60000).astype(np.uint8),
                 x_test=rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
                 y_test=rng.integers(0, 10, 10000).astype(np.uint8))
        return
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(exist_ok=True)
    for part in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 10000).tolist()}
        (batches / part).write_bytes(pickle.dumps(batch, protocol=4))


def has_data(name: str, data_dir: str | None) -> bool:
    if not data_dir:
        return False
    d = Path(data_dir)
    if name == "mnist":
        return (d / "mnist.npz").is_file()
    return (d / "cifar10-jpeg.tar.gz").is_file() or (d / "cifar-10-batches-py").is_dir()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--mnist-limit", type=int, default=20000,
                        help="data.limit_train for MNIST (0: the whole set; default 20000)")
    parser.add_argument("--cifar-limit", type=int, default=5000,
                        help="data.limit_train for CIFAR-10 (0: the whole set; default 5000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command; the median is shown")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a run is killed")
    parser.add_argument("--only", choices=list(CONFIGS), action="append", help="only this data set (repeatable)")
    args = parser.parse_args(argv)
    names = args.only or list(CONFIGS)
    limits = {"mnist": args.mnist_limit, "cifar10": args.cifar_limit}
    py = sys.executable

    rows = []
    with tempfile.TemporaryDirectory(prefix="cnntrain-mem-bench-") as tmp:
        tmp = Path(tmp)
        jobs = [("-", "import", [py, "-c", "import cnntrain.backend"], "TensorFlow + Keras, nothing else")]
        for name in names:
            data_dir, note = args.data_dir, "real data"
            if not has_data(name, data_dir):
                data_dir, note = str(tmp / "data"), f"RANDOM data ({args.data_dir} lacks it)"
                fake_data(name, Path(data_dir))
            load = ("from cnntrain.data import load_dataset as L; "
                    f"d = L({name!r}, data_dir={data_dir!r}, offline=True); "
                    "print(f'arrays {d.x_train.shape} + {d.x_test.shape} uint8 = '"
                    "f'{(d.x_train.nbytes + d.x_test.nbytes) / 2**20:.0f} MiB from {d.source}')")
            jobs.append((name, "load data", [py, "-c", load], note))
            limit = ["--set", f"data.limit_train={limits[name]}"] if limits[name] else []
            fit = [py, "-m", "cnntrain", "fit", str(CONFIGS[name].relative_to(ROOT)), "--epochs", "1", *limit,
                   "--data-dir", data_dir, "--offline", "--quiet", "--out", None]
            jobs.append((name, "fit", fit, note))

        for name, what, cmd, note in jobs:
            peaks, anons, walls = [], [], []
            for i in range(args.repeat):
                if None in cmd:
                    run = [str(tmp / f"run-{name}-{i}") if c is None else c for c in cmd]
                else:
                    run = cmd
                log = tmp / f"{name}-{what.replace(' ', '_')}-{i}.log"
                peak, anon, wall, status = peak_rss(run, args.timeout, log)
                if status != 0:
                    print(f"FAILED ({status}): {shlex.join(run)}\n{log.read_text()[-3000:]}", file=sys.stderr)
                    return 1
                peaks.append(peak)
                anons.append(anon)
                walls.append(wall)
            if what == "load data":
                shown = f"python -c \"load_dataset({name!r}, data_dir={data_dir!r})\""
            else:
                shown = " ".join(shlex.quote(c) for c in run).replace(py, "python").replace(str(tmp), "TMP")
            tail = log.read_text().strip().splitlines()
            rows.append((name, what, statistics.median(peaks), statistics.median(anons), statistics.median(walls),
                         note, tail[-1] if tail else ""))
            print(f"  {name:<8} {what:<10} {statistics.median(peaks):8,.0f} MiB  "
                  f"{statistics.median(walls):6.1f} s   {shown}", flush=True)

    print(f"\npeak RSS (MiB = 2^20 bytes): the kernel's high-water mark, median of {args.repeat} run(s); "
          f"anon = largest RssAnon seen\n(sampled every 50 ms: private memory, without the shared libraries' "
          f"file pages); {os.cpu_count()} CPU cores")
    print(f"{'data set':<9} {'process':<10} {'peak RSS MiB':>12} {'anon MiB':>9} {'wall s':>7}  notes")
    for name, what, peak, anon, wall, note, last in rows:
        extra = note
        if what == "load data":
            extra = f"{note}; {last}"
        elif what == "fit":
            extra = f"{note}; limit_train={limits[name] or 'none'}, 1 epoch"
        print(f"{name:<9} {what:<10} {peak:12,.0f} {anon:9,.0f} {wall:7.1f}  {extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

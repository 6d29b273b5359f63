"""What a fit is asked to do (FitOptions, the command line beside the spec) and what it has settled
before its first epoch (FitRun): the steps after the setup read both by name."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnntrain.data.splits import Splits
from cnntrain.spec import Spec
from cnntrain.train.distribute import Plan


@dataclass
class FitOptions:
    """How to train, beside the spec: the command-line options of `cnntrain fit`."""
    data_dir: str | None = None
    offline: bool = False
    out: str | None = None          # the run folder itself (default: output.dir/name/timestamp)
    resume: str | None = None       # a run folder to continue
    extend: bool = False            # the resumed run is finished: train it longer, to fit.epochs
    init_from: str | None = None    # a run or .keras file whose weights a new run starts from
    runs_root: str | None = None    # where --init-from finds a run by name (default: the spec's output.dir)
    device: str = "auto"
    mixed_precision: bool = False
    jit: bool = False
    deterministic: bool = False
    strategy: str | None = None     # default: the spec's fit.strategy
    devices: tuple = ()             # for mirrored: e.g. ("gpu:0", "gpu:1")
    workers: str | None = None      # for multi-worker: "host:port,host:port" (else TF_CONFIG)
    task_index: int | None = None
    connect_timeout: float = 120.0  # seconds the workers have to find each other
    callbacks: tuple = ()           # more Keras callbacks, after the epoch's commit (a sweep's pruning)
    threads: int | None = None      # TensorFlow's intra-op threads (default: one per core)


@dataclass
class FitRun:
    """A fit once its data, model and run folder are settled: what begin_state, RunState and finish
    work from, so that none of them takes a dozen values in a row."""
    spec: Spec
    options: FitOptions
    reporter: object          # a views Reporter (note, warn, callback, summary)
    plan: Plan                # the strategy, and whether this process is the chief
    data: Splits
    model: object             # the compiled keras.Model
    steps: int                # training steps per epoch
    monitor: str              # what best.keras follows
    mode: str                 # "max" or "min": which way the monitor improves
    metadata: dict            # what every saved model carries beside its weights
    started: float            # time.perf_counter() when the fit began: its wall time
    run_dir: Path
    created: bool             # this fit made run_dir: only then may a failed fit remove it whole

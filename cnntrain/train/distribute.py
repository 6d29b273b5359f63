"""tf.distribute strategies for fit: one device, all local GPUs (mirrored), several machines
(multi-worker, configured by TF_CONFIG as TensorFlow's own guide describes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from cnntrain.errors import CnntrainError
from cnntrain.spec.schema import STRATEGIES



@dataclass
class Plan:
    kind: str                 # the strategy actually used
    strategy: object
    replicas: int
    worker_index: int = 0
    num_workers: int = 1
    is_chief: bool = True
    addresses: tuple = ()
    watchdog: "Watchdog | None" = None

    def joined(self):
        """The workers have met (the model's variables exist on all): stop the watchdog."""
        if self.watchdog is not None:
            self.watchdog.stop()

    def describe(self, batch_size: int) -> str:
        per = batch_size // max(1, self.replicas)
        where = f", worker {self.worker_index} of {self.num_workers}" if self.num_workers > 1 else ""
        return (f"strategy: {self.kind}, {self.replicas} replica(s){where}; global batch {batch_size} = "
                f"{self.replicas} x {per} per replica")


def tf_config_from_workers(workers: str, task_index: int) -> dict:
    """`--workers host:port,host:port --task-index N` as the TF_CONFIG TensorFlow reads."""
    addresses = [w.strip() for w in workers.split(",") if w.strip()]
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise CnntrainError(f"--workers: '{address}' is not host:port", hint="e.g. --workers 10.0.0.1:12345,10.0.0.2:12345")
    if len(set(addresses)) != len(addresses):
        raise CnntrainError(f"--workers lists an address twice: {workers}")
    if task_index is None or not 0 <= task_index < len(addresses):
        raise CnntrainError(f"--task-index must be 0..{len(addresses) - 1} for {len(addresses)} workers, "
                            f"received: {task_index}", hint="worker 0 is the chief; give each machine its own index")
    return {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": task_index}}


_JOBS = ("chief", "worker")   # what MultiWorkerMirroredStrategy runs; no parameter servers, no evaluator
_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


def read_tf_config() -> dict:
    """TF_CONFIG, checked: a malformed one is an error here rather than a hang later."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise CnntrainError("strategy multi-worker needs TF_CONFIG or --workers/--task-index",
                            hint="e.g. --workers host1:12345,host2:12345 --task-index 0 on the first machine")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise CnntrainError(f"TF_CONFIG is not valid JSON: {exc}", file="$TF_CONFIG",
                            hint=f"e.g. {_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v) for v in cluster.values()):
        raise CnntrainError("TF_CONFIG has no valid 'cluster' (a mapping of job name to a list of host:port)",
                            file="$TF_CONFIG")
    _check_jobs(cluster)
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(cluster[task["type"]]):
        raise CnntrainError(f"TF_CONFIG's 'task' must name a job of the cluster and an index in it, received: "
                            f"{task!r}", file="$TF_CONFIG")
    return config


def _check_jobs(cluster: dict):
    others = [job for job in cluster if job not in _JOBS]
    if "ps" in others:
        raise CnntrainError("TF_CONFIG names a parameter-server cluster (job 'ps'), which cnntrain does not "
                            "support: it trains on several machines with MultiWorkerMirroredStrategy, where "
                            "every machine is a worker", file="$TF_CONFIG",
                            hint=f"list every machine as a worker, e.g. {_EXAMPLE}, or use --workers/--task-index")
    if others:
        raise CnntrainError(f"TF_CONFIG's cluster has a job '{others[0]}'; multi-worker training knows only "
                            "'chief' and 'worker'", file="$TF_CONFIG", hint=f"e.g. {_EXAMPLE}")


def make(kind: str, device_info: dict, *, devices=None, connect_timeout: float = 120.0, cluster: dict | None = None) -> Plan:
    """The plan of `kind`. `cluster`: multi-worker's TF_CONFIG from --workers/--task-index (None: the
    environment's)."""
    from cnntrain.backend import tf

    if kind not in STRATEGIES:
        raise CnntrainError(f"unknown strategy '{kind}'", hint=f"use one of: {', '.join(STRATEGIES)}")
    gpus = device_info["gpus_used"]
    if kind == "auto":
        if gpus <= 1:
            # TensorFlow's default strategy: no distribution layer at all. OneDeviceStrategy
            # would wrap every step and the input pipeline, and halved throughput here.
            return Plan("default", tf.distribute.get_strategy(), 1)
        kind = "mirrored"
    if kind == "one-device":
        device = "/gpu:0" if gpus else "/cpu:0"
        return Plan("one-device", tf.distribute.OneDeviceStrategy(device), 1)
    if kind == "mirrored":
        try:
            strategy = tf.distribute.MirroredStrategy(devices=devices or None)
        except (ValueError, RuntimeError) as exc:
            raise CnntrainError(f"cannot mirror over {devices or 'all local GPUs'}: {exc}",
                                hint="list devices as gpu:0,gpu:1 (or cpu:0,cpu:1 to try it on a CPU)") from None
        return Plan("mirrored", strategy, strategy.num_replicas_in_sync)
    if cluster is not None:
        # The strategy's default cluster resolver (TFConfigClusterResolver) reads the cluster from
        # TF_CONFIG: written here, just before the strategy starts, and nowhere else.
        os.environ["TF_CONFIG"] = json.dumps(cluster)
    config = read_tf_config()
    task = config["task"]
    addresses = tuple(a for job in config["cluster"].values() for a in job)
    is_chief = task["type"] == "chief" or ("chief" not in config["cluster"] and task["type"] == "worker"
                                           and task["index"] == 0)
    # The strategy's constructor already waits for the other workers: watch from here.
    watchdog = Watchdog(addresses, connect_timeout).start()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=connect_timeout)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    return Plan("multi-worker", strategy, strategy.num_replicas_in_sync, worker_index=task["index"],
                num_workers=len(addresses), is_chief=is_chief, addresses=addresses, watchdog=watchdog)


_WATCH = """
import os, select, signal, sys
pid, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if not ready:
    sys.stderr.write(message)
    sys.stderr.flush()
    os.kill(pid, signal.SIGKILL)
"""


class Watchdog:
    """Ends the process with a clear message when the workers do not meet within the timeout.

    Creating MultiWorkerMirroredStrategy and the model's variables blocks until every
    worker has joined, inside TensorFlow's C++ code with the GIL held, so neither a
    thread nor a signal handler of ours could run: the watchdog is a tiny child process.
    """

    def __init__(self, addresses, timeout: float):
        self.addresses, self.timeout = addresses, timeout
        self.child = None

    def start(self):
        message = (f"error: the workers ({', '.join(self.addresses)}) did not all join within {self.timeout:.0f} s\n"
                   "  hint: start cnntrain on every worker with the same --workers list and its own --task-index, "
                   "and check that the ports are reachable\n")
        self.child = subprocess.Popen([sys.executable, "-c", _WATCH, str(os.getpid()), str(self.timeout), message],
                                      stdin=subprocess.PIPE)
        return self

    def stop(self):
        if self.child is not None and self.child.poll() is None:
            self.child.stdin.write(b"joined\n")
            self.child.stdin.close()
            self.child.wait()


def shard_of(plan) -> tuple[int, int] | None:
    """(workers, this worker's index) for the input pipeline to shard, or None on one machine."""
    return (plan.num_workers, plan.worker_index) if plan.num_workers > 1 else None


def sharded(dataset, plan):
    """A dataset the pipeline sharded already (shard_of: each worker gathers only its own batches
    of indices, AutoShardPolicy.DATA's rule, so a worker reads 1/workers of a cache file rather
    than all of it to throw most away), marked so that tf.distribute does not shard it again."""
    if plan.num_workers > 1:
        from cnntrain.backend import tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
    return dataset

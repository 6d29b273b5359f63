"""tf.distribute on this CPU machine: two real worker processes on loopback, and mirrored over
two logical CPU devices. Every subprocess is bounded in time and always reaped."""
import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cnntrain.runs import model_file
from cnntrain.cli import cli
from helpers.procs import outputs
from helpers.runs import RUN_FILES

def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start(args, env):
    return subprocess.Popen([sys.executable, "-m", "cnntrain", "fit", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_workers_on_loopback_train_one_run(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=1)
    ports = free_ports(2)
    workers = ",".join(f"127.0.0.1:{p}" for p in ports)
    env = {**os.environ, "CNNTRAIN_DATA_DIR": str(mnist_dir)}
    env.pop("TF_CONFIG", None)
    run = tmp_path / "multi"
    procs = [start([spec, "--strategy", "multi-worker", "--workers", workers, "--task-index", i, "--out", run,
                    "--quiet", "--connect-timeout", 60], env) for i in (0, 1)]
    results = outputs(procs, timeout=180)
    for code, _out, err in results:
        assert code == 0, err
    assert {p.name for p in run.iterdir()} == RUN_FILES  # worker 1 cleaned up after itself
    model, meta = model_file.load_model(run / "model.keras")
    assert meta["class_names"] == [str(i) for i in range(10)]
    multi = json.loads((run / "metrics.json").read_text())
    single = CliRunner().invoke(cli, ["fit", str(spec), "--data-dir", str(mnist_dir), "--out", str(tmp_path / "one"),
                                      "--quiet"])
    assert single.exit_code == 0, single.output
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    # Same global batch, same data, summed gradients: the same training within noise.
    assert abs(multi["test"]["accuracy"] - one["test"]["accuracy"]) <= 0.15


@pytest.mark.slow
def test_a_missing_worker_times_out_with_a_message(tiny_spec, mnist_dir, tmp_path):
    ports = free_ports(2)
    env = {**os.environ, "CNNTRAIN_DATA_DIR": str(mnist_dir)}
    workers = ",".join(f"127.0.0.1:{p}" for p in ports)
    (code, out, err), = outputs([start([tiny_spec(), "--strategy", "multi-worker", "--workers", workers,
                                     "--task-index", 0, "--out", tmp_path / "run", "--connect-timeout", 3], env)],
                             timeout=120)
    assert code != 0
    assert err.endswith(f"error: the workers (127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]}) did not all join within 3 s\n"
                        "  hint: start cnntrain on every worker with the same --workers list and its own "
                        "--task-index, and check that the ports are reachable\n")
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=2)
    env = {**os.environ, "CNNTRAIN_DATA_DIR": str(mnist_dir)}
    results = outputs([start([spec, "--strategy", "mirrored", "--devices", "cpu:0,cpu:1", "--out", tmp_path / "m"], env),
                    start([spec, "--strategy", "one-device", "--out", tmp_path / "o"], env)], timeout=180)
    for code, _out, err in results:
        assert code == 0, err
    assert "strategy: mirrored, 2 replica(s); global batch 32 = 2 x 16 per replica" in results[0][2]
    mirrored = json.loads((tmp_path / "m" / "metrics.json").read_text())
    single = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert mirrored["test"]["loss"] == pytest.approx(single["test"]["loss"], rel=0.05)


BAD_CONFIGS = [
    ("not json", "{cluster", "$TF_CONFIG: TF_CONFIG is not valid JSON: Expecting property name enclosed in double "
     "quotes: line 1 column 2 (char 1)\n"
     '  hint: e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\n'),
    ("no cluster", '{"task": {"type": "worker", "index": 0}}',
     "$TF_CONFIG: TF_CONFIG has no valid 'cluster' (a mapping of job name to a list of host:port)\n"),
    ("index out of range", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "$TF_CONFIG: TF_CONFIG's 'task' must name a job of the cluster and an index in it, received: "
     "{'type': 'worker', 'index': 3}\n"),
    ("parameter servers", '{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "ps", '
     '"index": 0}}',
     "$TF_CONFIG: TF_CONFIG names a parameter-server cluster (job 'ps'), which cnntrain does not support: it trains "
     "on several machines with MultiWorkerMirroredStrategy, where every machine is a worker\n"
     '  hint: list every machine as a worker, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": '
     '{"type": "worker", "index": 0}}, or use --workers/--task-index\n'),
    ("unknown job", '{"cluster": {"worker": ["127.0.0.1:1"], "trainer": ["127.0.0.1:2"]}, "task": {"type": "worker", '
     '"index": 0}}',
     "$TF_CONFIG: TF_CONFIG's cluster has a job 'trainer'; multi-worker training knows only 'chief' and 'worker'\n"
     '  hint: e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\n'),
]


@pytest.mark.parametrize("name,config,message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_malformed_tf_config(name, config, message, tiny_spec, mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", config)
    result = CliRunner().invoke(cli, ["fit", str(tiny_spec()), "--data-dir", str(mnist_dir), "--strategy",
                                      "multi-worker", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.stderr == message


def test_bad_worker_list_and_batch(tiny_spec, mnist_dir, tmp_path):
    result = CliRunner().invoke(cli, ["fit", str(tiny_spec()), "--strategy", "multi-worker", "--workers",
                                      "127.0.0.1:1,127.0.0.1:2", "--task-index", "2", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.stderr == ("error: --task-index must be 0..1 for 2 workers, received: 2\n"
                             "  hint: worker 0 is the chief; give each machine its own index\n")
    result = CliRunner().invoke(cli, ["fit", str(tiny_spec()), "--strategy", "multi-worker"])
    assert result.stderr == ("error: multi-worker training needs --out: the same run folder path on every worker\n"
                             "  hint: e.g. --out runs/cifar10/multi\n")

"""The benchmark scripts work: their cnntrain imports resolve, and tiny real runs of them write what they say."""
import ast
import re
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def cnntrain_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnntrain"):
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names if alias.name.startswith("cnntrain"))


def load_benchmark(name):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    loaded = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_cnntrain_import_of_a_benchmark_resolves(path):
    missing = []
    for module, names in cnntrain_imports(path):
        loaded = importlib.import_module(module)
        missing += [f"{module}.{name}" for name in names
                    if not hasattr(loaded, name) and importlib.util.find_spec(f"{module}.{name}") is None]
    assert missing == []


@pytest.mark.slow   # two trainings against a clock
def test_time_to_accuracy_writes_a_curve_per_config_and_stops_at_its_minutes(tmp_path, tiny_spec, mnist_dir, capsys):
    import csv

    benchmark = load_benchmark("time_to_accuracy")
    spec = str(tiny_spec())
    longer = f"{spec} --set fit.epochs=3 --set name=longer"     # a config with overrides of its own
    out = tmp_path / "bench"
    assert benchmark.main(["--config", spec, "--config", longer, "--data-dir", str(mnist_dir), "--minutes", "5",
                           "--out", str(out)]) == 0
    with open(out / "time_to_accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["config"], r["epoch"]) for r in rows] == [("tiny", "1"), ("tiny", "2"),
                                                         ("longer", "1"), ("longer", "2"), ("longer", "3")]
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 and float(r["wall_s"]) > 0 for r in rows)
    assert (out / "time_to_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out.split("\n\n")[1].splitlines()
    assert table[0] == "| config | 2 min | final (epochs, wall) | training speed |"
    assert table[2].startswith(f"| `{spec}` | ") and "(2 epochs, " in table[2]
    assert table[3].startswith(f"| `{longer}` | ") and "(3 epochs, " in table[3]
    assert re.search(r" \| [\d,]+ img/s, [\d,]+ GFLOP/s( \(\d+% of peak\))? \|$", table[3]), table[3]

    # A budget of zero minutes ends each fit at its first epoch end.
    short = tmp_path / "short"
    assert benchmark.main(["--config", longer, "--data-dir", str(mnist_dir), "--minutes", "0",
                           "--out", str(short)]) == 0
    with open(short / "time_to_accuracy.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]
    with pytest.raises(SystemExit, match="expected FILE"):
        benchmark.parse_config(f"{spec} fit.epochs=3")


def test_cpu_speed_sides_and_peaks():
    speed = load_benchmark("cpu_speed")
    assert speed.parse_side("bf16:b1024:t2") == {"name": "bf16:b1024:t2", "precision": "bf16", "batch": 1024,
                                                 "threads": 2, "airbench": False}
    assert speed.parse_side("fp32") == {"name": "fp32", "precision": "fp32", "batch": None, "threads": None,
                                        "airbench": False}
    assert speed.parse_side("auto")["precision"] == "auto"
    assert speed.parse_side("airbench-bf16:t1") == {"name": "airbench-bf16:t1", "precision": "bf16", "batch": None,
                                                    "threads": 1, "airbench": True}
    for bad in ("fp16", "airbench-auto", "xairbench-fp32"):
        with pytest.raises(SystemExit, match=f"side '{bad}': the precision must be fp32, bf16 or auto "
                                             r"\(airbench-fp32 or airbench-bf16\)"):
            speed.parse_side(bad)
    with pytest.raises(SystemExit, match="side 'fp32:x2': expected :bBATCH or :tTHREADS .airbench: :tTHREADS., "
                                         "got 'x2'"):
        speed.parse_side("fp32:x2")
    with pytest.raises(SystemExit, match="got 'b512'"):    # the port trains at its own batch size
        speed.parse_side("airbench-fp32:b512")
    amx = {"name": "cpu", "mhz": 2000.0, "cores": 2, "flags": {"avx512f", "avx512_bf16", "amx_bf16"}}
    assert speed.peak_flops(amx, "fp32") == 2 * 2000e6 * 64
    assert speed.peak_flops(amx, "bf16") == 2 * 2000e6 * 1024
    assert speed.peak_flops({**amx, "flags": {"avx512f", "avx512_bf16"}}, "bf16") == 2 * 2000e6 * 128
    assert speed.peak_flops({**amx, "flags": {"avx2"}}, "fp32") == 2 * 2000e6 * 32
    assert speed.peak_flops({**amx, "mhz": None}, "fp32") is None


@pytest.mark.slow   # a real fit per side, as the benchmark runs it
def test_cpu_speed_runs_a_side_as_a_real_fit(tiny_spec, mnist_dir, capsys):
    speed = load_benchmark("cpu_speed")
    assert speed.main(["--config", str(tiny_spec()), "--images", "96", "--rounds", "1", "--side", "fp32:b16",
                       "--data-dir", str(mnist_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:-1] == ["| config | side | images/s | ratio | per round | GFLOP/s | of peak |",
                            "| --- | --- | --- | --- | --- | --- | --- |"]
    assert lines[-1].startswith(f"| {tiny_spec()} | fp32:b16 | ") and " | 1.00 | 1.00 | " in lines[-1]
    assert lines[-1].endswith(" (fp32) |"), lines[-1]
    assert lines[-7].startswith("  round 1 tiny fp32:b16: ") and lines[-7].endswith(" images/s")
    assert lines[-6] == "" and lines[-5].startswith("load average ") and lines[-4] == ""


def test_cpu_speed_airbench_side_needs_a_python_with_torch():
    speed = load_benchmark("cpu_speed")
    args = speed.argparse.Namespace(torch_python=None, data_dir="data", images=2048)
    with pytest.raises(SystemExit, match="side 'airbench-fp32': needs --torch-python, a Python with PyTorch"):
        speed.side_command(args, speed.parse_side("airbench-fp32"), None)
    args.torch_python = "/opt/torch/bin/python"
    assert speed.side_command(args, speed.parse_side("airbench-bf16:t2"), None) == [
        "/opt/torch/bin/python", str(speed.AIRBENCH), "--data-dir", "data", "--bench-images", "2048",
        "--epochs", "3", "--threads", "2", "--bf16"]


def test_time_to_accuracy_seed_summary_is_mean_and_spread_per_config(capsys):
    benchmark = load_benchmark("time_to_accuracy")
    results = [{"config": "a.yaml", "name": f"a-s{seed}", "wall_s": wall} for seed, wall in ((1, 80.0), (2, 90.0))]
    results.append({"config": "b.yaml", "name": "b-s1", "wall_s": 100.0})
    rows = [{"config": "a-s1", "val_accuracy": 0.99, "test_accuracy": 0.5},
            {"config": "a-s1", "val_accuracy": 0.994, "test_accuracy": 0.995},
            {"config": "a-s2", "val_accuracy": 0.996, "test_accuracy": 0.996},
            {"config": "b-s1", "val_accuracy": None, "test_accuracy": 0.9}]
    benchmark.print_seed_summary(["a.yaml", "b.yaml"], results, rows)
    assert capsys.readouterr().out.splitlines()[1:] == [
        "| config | seeds | val accuracy, mean (spread) | test accuracy, mean (spread) | wall s, mean (spread) |",
        "| --- | --- | --- | --- | --- |",
        "| `a.yaml` | 2 | 99.50% (spread 0.20%) | 99.55% (spread 0.10%) | 85 (10) |",
        "| `b.yaml` | 1 | - | 90.00% (spread 0.00%) | 100 (0) |"]


def test_time_to_accuracy_reads_the_airbench_ports_lines():
    benchmark = load_benchmark("time_to_accuracy")
    lines = ["epoch 1 test 0.5123 wall 160.4 s\n", "epoch 2 test 0.7480 wall 321.0 s\n",
             "test accuracy: tta0 0.8992 tta1 0.9060 tta2 0.9071; 1349.2 s in all, torch.float32\n"]
    rows, final, wall = benchmark.airbench_rows(lines, "airbench94-9.9ep-s1")
    assert rows == [{"config": "airbench94-9.9ep-s1", "epoch": 1, "wall_s": 160.4, "test_accuracy": 0.5123,
                     "val_accuracy": None, "train_accuracy": None},
                    {"config": "airbench94-9.9ep-s1", "epoch": 2, "wall_s": 321.0, "test_accuracy": 0.748,
                     "val_accuracy": None, "train_accuracy": None}]
    assert (final, wall) == (0.9071, 1349.2)

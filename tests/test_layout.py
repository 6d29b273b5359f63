"""The layout of cnntrain/: imports one way, no cycle, no module over 400 lines (tests/helpers/layout.py)."""
from pathlib import Path

from helpers import layout


def test_the_package_keeps_the_import_rule():
    assert layout.breaches() == []


def test_the_check_finds_each_kind_of_breach(tmp_path):
    root = tmp_path / "cnntrain"
    for folder in ("runs", "train"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "runs" / "folder.py").write_text("from cnntrain.train import fit\n")
    (root / "train" / "fit.py").write_text("from cnntrain.runs import folder\nimport rich\n" + "x = 1\n" * 399)
    assert layout.breaches(root) == [
        "cnntrain.runs.folder imports cnntrain.train.fit: against the direction (layer 1 -> 3)",
        "cnntrain.train.fit imports rich: only views/ and figures/ may",
        "import cycle: cnntrain.runs.folder -> cnntrain.train.fit -> cnntrain.runs.folder",
        "package cycle: runs -> train -> runs (cnntrain.runs.folder imports cnntrain.train.fit; "
        "cnntrain.train.fit imports cnntrain.runs.folder)",
        "cnntrain.train.fit: 401 lines, over 400",
    ]


def test_every_folder_of_the_package_has_a_layer():
    root = Path(layout.package_root())
    folders = {p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {name for layer in layout.LAYERS for name in layer if (root / name).is_dir()}


def test_the_check_finds_a_cycle_of_packages_that_no_module_cycle_shows(tmp_path):
    # What assess and export were: evaluate loaded models through export's runners, and export's
    # check read data through assess' evaluate; no module imported itself back, the packages did.
    root = tmp_path / "cnntrain"
    for folder in ("assess", "export"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "assess" / "evaluate.py").write_text("from cnntrain.export import runners\n")
    (root / "assess" / "metrics.py").write_text("")
    (root / "export" / "runners.py").write_text("")
    (root / "export" / "check.py").write_text("def f():\n    from cnntrain.assess import metrics\n")
    assert layout.breaches(root) == [
        "package cycle: assess -> export -> assess (cnntrain.assess.evaluate imports cnntrain.export.runners; "
        "cnntrain.export.check imports cnntrain.assess.metrics)",
    ]
    (root / "assess" / "evaluate.py").write_text("")
    assert layout.breaches(root) == []

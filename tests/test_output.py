"""What the commands print and write: full tables when piped or narrow, which run or model they used,
one format for accuracies with the number of images, pictures in the format their name says."""
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from rich.console import Console

from cnntrain.cli import cli
from cnntrain.views import tables
from helpers import formats as fx
from helpers import terminal
from helpers.cli import without_low_confidence
from helpers.runs import trained_runs

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def run(*args, columns=None):
    """The CLI through click's runner (not a terminal, whatever a CI sets to force colours), with
    $COLUMNS set as a narrow terminal would."""
    env = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, **({"COLUMNS": str(columns)} if columns else {})}
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny finished runs: `old`, then `new` (which tests on 20 of the 50 test images)."""
    made = trained_runs(tmp_path_factory.mktemp("two"), 1, [[], ["--set", "data.limit_test=20"]], run)
    made["old"], made["new"] = sorted((made["runs"] / "tiny").iterdir())
    return made


def test_fit_says_accuracy_in_percent_on_how_many_images(two_runs):
    line = two_runs["fits"][1].stdout
    assert re.fullmatch(rf"tiny: 1 epoch in \d+ s, test accuracy \d+\.\d\d% on 20 images  ->  "
                        rf"{re.escape(str(two_runs['new']))}\n", line), line
    metrics = json.loads((two_runs["new"] / "metrics.json").read_text())
    assert metrics["images"] == {"train": 160, "validation": 40, "test": 20}


def test_the_newest_run_is_the_last_started_and_commands_say_which(two_runs):
    old, new = two_runs["old"], two_runs["new"]
    result = run("evaluate", old, "--data-dir", two_runs["data"])
    assert result.exit_code == 0, result.output
    assert old.stat().st_mtime >= new.stat().st_mtime  # the case: evaluate made the older folder the newer one
    assert result.stderr == f"wrote {old / 'eval.json'} and {old / 'confusion.png'}\n"
    assert re.search(rf"^model +{re.escape(str(old / 'model.keras'))}$", result.stdout, re.M)
    predicted = run("predict", two_runs["image"], "--runs", two_runs["runs"])
    assert predicted.exit_code == 0, predicted.output
    assert without_low_confidence(predicted.stderr) == f"model: {new / 'model.keras'}\n"
    listed = json.loads(run("runs", "--runs", two_runs["runs"], "--json").stdout)
    assert [row["run"] for row in listed] == [str(new), str(old)]
    # The test figures: the old run's from evaluate on all 50 images, the new one's from its fit on 20.
    assert [(row["test_images"], row["test_from"]) for row in listed] == [(20, "fit"), (50, "evaluate")]
    assert listed[1]["test_accuracy"] == json.loads((old / "eval.json").read_text())["accuracy"]

    table = run("runs", "--runs", two_runs["runs"], columns=80).stdout
    for row in listed:
        name = "/".join(Path(row["run"]).parts[-2:])
        assert re.search(rf"│ {re.escape(name)} +│ completed │ +1 │ +\d+\.\d\d% │ +\d+\.\d\d% │ "
                         rf"{row['test_images']} images \({row['test_from']}\) +│", table), table
    assert "…" not in table


def test_evaluate_of_a_model_file_says_what_it_wrote(two_runs):
    best = two_runs["old"] / "best.keras"
    result = run("evaluate", best, "--data-dir", two_runs["data"])
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"wrote {two_runs['old'] / 'best.eval.json'} and "
                             f"{two_runs['old'] / 'best.confusion.png'}\n")
    assert (two_runs["old"] / "best.eval.json").is_file()


def test_pictures_are_written_in_the_format_their_name_says(two_runs, tmp_path):
    for name, kind in (("f.jpg", "JPEG"), ("f.png", "PNG"), ("f.webp", "WEBP")):
        result = run("filters", two_runs["old"], "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert result.stderr == f"model: {two_runs['old'] / 'model.keras'}\n"
        assert re.fullmatch(rf"wrote {re.escape(str(tmp_path / name))}: 4 filters of conv2d\w*\n", result.stdout)
        with Image.open(tmp_path / name) as picture:
            assert picture.format == kind
    for name, what in (("f.bmp", "'.bmp' is not a picture format cnntrain writes"),
                       ("f", "the file name has no suffix to say which picture format to write")):
        result = run("activations", two_runs["old"], two_runs["image"], "--out", tmp_path / name)
        assert result.exit_code == 1
        assert result.stderr == (f"{tmp_path / name}: cannot write the picture: {what}\n"
                                 "  hint: name it .png, .jpg, .webp, .tif, .pdf or .svg\n")
        assert not (tmp_path / name).exists()


def test_piped_summary_is_never_cut():
    result = run("summary", CONFIGS / "mnist.yaml", columns=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert re.search(r"│ dense\w* +│ Dense +│ \(64,\) +│ +294,976 │ +│ +│ +│ whole image +│ +294,912 │", result.stdout)
    assert "receptive field" in result.stdout


def test_a_narrow_terminal_folds_and_never_cuts_numbers():
    from cnntrain.insight import layers
    from cnntrain.model import build
    from cnntrain.spec import load_spec

    model = build.build_all(load_spec(CONFIGS / "mnist.yaml"))
    rows = layers.describe(model)
    console = Console(width=80, record=True, color_system=None, file=io.StringIO())
    console.print(tables.model_table(rows, layers.totals(rows), "mnist"))  # without a width to fit: folded
    console.print(tables.model_table(rows, layers.totals(rows), "fitted", width=80))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    confusion = [[1234 if i == j else 5 for j in range(10)] for i in range(10)]
    for table in tables.confusion_tables({"class_names": names, "confusion": confusion}, width=80):
        console.print(table)
    run = {"run": "runs/mnist/20261202-141857", "status": "completed", "epochs": 8, "val_accuracy": 0.99,
           "test_accuracy": 0.9926, "test_images": 10000, "test_from": "evaluate", "wall_time_s": 650.0,
           "images_per_s": 1234.5}
    console.print(tables.runs_table([run], width=80))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for number in ("294,976", "5,308,416", "194,688"):
        assert re.search(rf"[ │]{number} │", text), number
    # Named columns would need 95 columns: numbered ones, each row's label saying its number.
    for i, name in enumerate(names):
        assert re.search(rf"^ *{i} {name} +{' +'.join('1234' if j == i else '5' for j in range(10))}$", text, re.M), \
            text
    fitted = text[text.index("fitted"):text.index("Confusion matrix")]
    assert re.search(r"│ max_pooling2d\w* │ MaxPooling2D │ \(12, 12, 32\) │ +0 │ +│", fitted), fitted
    assert "(padding, stride, kernel, receptive field: left out to fit the terminal; --json shows them)" in \
        " ".join(line.strip() for line in fitted.splitlines())
    runs = " ".join(line.strip() for line in text[text.index("runs, newest first"):].splitlines())
    assert re.search(r"│ +8 │ +99\.00% │ +99\.26% │ 10,000 +│", text) and "1,234" not in runs
    assert "(images/s, time: left out to fit the terminal; --json shows them)" in runs


def objects_model(tmp_path, names, test_images: int):
    """A part-trained 8x8 model.keras of the classes `names`, with a folder of PNGs (train/ and
    test/, one subfolder per class) as its data set: evaluate's tables with long class names."""
    from cnntrain.runs import model_file
    from helpers.models import metadata, part_trained, synthetic

    folder = tmp_path / "objects"
    for split, (x, y) in (("train", synthetic(20, 1)), ("test", synthetic(test_images, 2))):
        for i, (pixels, label) in enumerate(zip(x, y)):
            (folder / split / names[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[..., 0]).save(folder / split / names[label] / f"{i}.png")
    model = tmp_path / "objects.keras"
    model_file.save_model(part_trained(3), model, metadata(names, dataset="image_folder", data_path=str(folder),
                                                           image_size=[8, 8], color_mode="grayscale"))
    return model


def test_piped_evaluation_keeps_every_class_name(tmp_path):
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    model = objects_model(tmp_path, names, 60)
    result = run("evaluate", model, columns=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    confusion = result.stdout[result.stdout.index("Confusion matrix"):]
    header = next(line for line in confusion.splitlines() if "true \\ pred" in line)
    assert header.split("┃")[2:-1] == [f" {name} " for name in names]
    assert re.search(r"^│ automobile +│ +[01]\.\d{4} │", result.stdout, re.M), result.stdout


def test_written_paths_are_printed_with_their_control_characters_escaped(two_runs, tmp_path):
    import shutil

    run_dir = tmp_path / "run\x1b[2J\x1b]0;pwned\x07"
    shutil.copytree(two_runs["old"], run_dir)
    result = run("card", run_dir, "--data-dir", two_runs["data"])
    assert result.exit_code == 0, result.output
    shown = str(tmp_path / "run\\x1b[2J\\x1b]0;pwned\\x07" / "MODEL_CARD.md")
    assert (result.stdout, result.stderr) == (f"wrote {shown}\n", "")
    assert (run_dir / "MODEL_CARD.md").is_file()


def test_class_names_with_control_characters_draw_without_a_raw_warning(tmp_path):
    import warnings

    import numpy as np

    from cnntrain.assess.metrics import metrics_from_probabilities
    from cnntrain.figures import confusion

    names = ["\x1b]0;pwned\x07", "\x1b[2J"]
    result = metrics_from_probabilities(np.eye(2)[[0, 1, 1]] * 0.8 + 0.1, np.array([0, 1, 0]), names, top_k=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        confusion.confusion_png(result, tmp_path / "confusion.png")
    assert [str(w.message) for w in caught if "Glyph" in str(w.message)] == []
    with Image.open(tmp_path / "confusion.png") as picture:
        assert picture.format == "PNG"


@pytest.mark.parametrize("command", [("lr-find", "SPEC"), ("runs", "--compare", "a", "b")])
def test_a_picture_out_is_checked_before_any_work(tiny_spec, mnist_dir, tmp_path, command):
    """lr-find ran the whole range test before it refused --out x.bmp."""
    args = [tiny_spec(epochs=1) if a == "SPEC" else a for a in command]
    result = run(*args, "--out", tmp_path / "x.bmp", "--data-dir" if command[0] == "lr-find" else "--json",
                 *([mnist_dir] if command[0] == "lr-find" else []))
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", (
        f"{tmp_path / 'x.bmp'}: cannot write the picture: '.bmp' is not a picture format cnntrain writes\n"
        "  hint: name it .png, .jpg, .webp, .tif, .pdf or .svg\n"))


PTY_SCRIPT = """
import fcntl, struct, sys, termios
from cnntrain.cli import cli
for width in (80, 100, 120):
    fcntl.ioctl(sys.stdout.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 60, width, 0, 0))
    print(f"=== {width} columns", flush=True)
    try:
        cli.main(sys.argv[1:], standalone_mode=False)
    finally:
        sys.stdout.flush()
"""


def in_a_terminal(args, script=PTY_SCRIPT) -> str:
    """What `cnntrain ARGS` (or `script` given ARGS) prints on a real terminal (a pseudo-terminal) 80,
    100 and 120 columns wide, escape sequences and carriage returns taken out."""
    return terminal.run_in_pty(script, args)


def test_the_confusion_matrix_on_a_real_terminal_keeps_every_count_and_name(tmp_path):
    names = [f"{name}_with_a_long_name" for name in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                     "horse", "ship", "truck")]
    model = objects_model(tmp_path, names, 400)
    text = in_a_terminal(["evaluate", model])
    confusion = json.loads((tmp_path / "objects.eval.json").read_text())["confusion"]
    assert max(max(row) for row in confusion) >= 10   # counts of two digits or more, which a cut would shorten
    shown = text.split("=== ")[1:]
    assert [part.split(" ", 1)[0] for part in shown] == ["80", "100", "120"]
    for part, width in zip(shown, (80, 100, 120)):
        # The tables fit; the message naming the files written is folded between words, and only a
        # path longer than the line stands alone on a longer one.
        for line in part.splitlines():
            words = line.removeprefix("wrote ").strip().removeprefix("and ").split()
            assert len(line) <= width or len(words) == 1, (width, line)
        assert "…" not in part
        matrix = part[part.index("Confusion matrix"):part.index("Most confused") if "Most confused" in part else None]
        for i, name in enumerate(names):
            row = next(line for line in matrix.splitlines() if line.strip().startswith(f"{i} {name} "))
            cells = row.split(f"{i} {name}", 1)[1].split()
            assert cells == [str(c) if c else "·" for c in confusion[i]], (width, row)
        per_class = part[part.index("Per class"):part.index("Confusion matrix")]
        for name in names:
            assert re.search(rf"^. {name} +. +[01]\.\d{{4}} ", per_class, re.M), (width, per_class)


def test_runs_on_a_real_terminal_never_folds_a_run_id(two_runs, tmp_path):
    import shutil

    run = tmp_path / "fashion_png" / "20261207-193735"
    shutil.copytree(two_runs["old"], run)
    text = in_a_terminal(["runs", "--runs", tmp_path])
    for part, width in zip(text.split("=== ")[1:], (80, 100, 120)):
        # The table fits (its caption is a line of text the terminal wraps).
        assert max(len(line) for line in part.splitlines() if line[:1] in "┏┃┡│└") <= width, part
        row = next(line for line in part.splitlines() if "fashion_png" in line)
        assert row.startswith("│ fashion_png/20261207-193735 │ completed │ "), part


def test_the_confusion_pictures_labels_stay_inside_it(tmp_path):
    """The colour bar's "1000" (and every name) is drawn inside the picture: nothing touches its edges."""
    import numpy as np

    from cnntrain.figures.confusion import confusion_png

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    confusion = [[1000 if i == j else 3 for j in range(10)] for i in range(10)]
    path = confusion_png({"class_names": names, "confusion": confusion, "accuracy": 0.97, "samples": 10_270},
                         tmp_path / "confusion.png")
    pixels = np.asarray(Image.open(path).convert("L"))
    assert pixels.shape == (700, 700)
    edges = {"left": pixels[:, 0], "right": pixels[:, -1], "top": pixels[0], "bottom": pixels[-1]}
    assert {side: int((line < 250).sum()) for side, line in edges.items()} == dict.fromkeys(edges, 0)


@pytest.mark.parametrize(("width", "expected"), [
    (100, "epoch 1/2  accuracy 17.78%  loss 1.6167  val_accuracy 60.00%  val_loss 1.2971  1.2s"),
    (80, "epoch 1/2 accuracy 17.78% loss 1.6167 val_accuracy 60.00% val_loss 1.2971 1.2s"),
    (40, "epoch 1/2 accuracy 17.78% loss 1.6167\n  val_accuracy 60.00% val_loss 1.2971\n  1.2s"),
])
def test_an_epoch_line_fits_the_terminal_without_breaking_a_figure(width, expected):
    """At 80 columns the epoch line was 81 characters, and the terminal broke '1.2s' into '1' and '.2s'."""
    from cnntrain.views.console import fields_line

    fields = ["epoch 1/2", "accuracy 17.78%", "loss 1.6167", "val_accuracy 60.00%", "val_loss 1.2971", "1.2s"]
    assert fields_line(fields, width) == expected


def test_a_note_is_folded_between_words_on_a_terminal():
    """At 80 columns fit's data line broke 'classes' into 'classe' and 's'."""
    from cnntrain.views.console import fitted

    text = "data: flowers: 135 train, 15 validation, 40 test images of [64, 64, 3], 5 classes"
    assert fitted(text, 100) == text
    assert fitted(text, 80) == ("data: flowers: 135 train, 15 validation, 40 test images of [64, 64, 3], 5\n"
                                "  classes")
    assert fitted("data: /a/very/long/path/to/the/images: 5 classes", 20) == \
        "data:\n  /a/very/long/path/to/the/images:\n  5 classes"


NOTES_SCRIPT = """
import fcntl, struct, sys, termios
from cnntrain.views import console
from cnntrain.views.reporter import Reporter
for width in (80, 100, 120):
    fcntl.ioctl(sys.stdout.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 60, width, 0, 0))
    print(f"=== {width} columns", flush=True)
    for mode in ("plain", "rich"):
        Reporter(mode).note(sys.argv[1])
        Reporter(mode).warn(sys.argv[1])
    console.note(sys.argv[1])
    console.warn(sys.argv[1])
"""


def test_fits_notes_and_warnings_fold_as_every_commands_do_on_a_terminal():
    """The Reporter's notes and warnings are console.note's and console.warn's: folded between words at
    the terminal's width, in every mode that shows them."""
    text = "data: flowers: 135 train, 15 validation, 40 test images of [64, 64, 3], 5 classes"
    note, warning = text.replace(" 5 classes", " 5\n  classes"), f"warning: {text.replace(' 5 classes', '')}\n  5 classes"
    shown = in_a_terminal([text], NOTES_SCRIPT).split("=== ")[1:]
    assert shown[0] == "80 columns\n" + f"{note}\n{warning}\n" * 3
    assert shown[1] == "100 columns\n" + f"{text}\nwarning: {text}\n" * 3


def test_an_error_is_folded_between_words_on_a_terminal():
    """At 80 columns a broken image's error broke '(OSError: Truncated File Read)' before its ')',
    and its hint mid-word: an error is folded as a note is, each line on its own."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(dir="/tmp"))   # a path of known length: pytest's vary
    try:
        spec = folder / "spec.yaml"
        spec.write_text("name: x\nmodel:\n  layers:\n    - Conv2d: {filters: 3}\n")
        text = in_a_terminal(["check", spec])
    finally:
        shutil.rmtree(folder)
    at_80 = text.split("=== ")[1].split("\n", 1)[1]
    assert at_80 == (
        f"{spec}:4:7: unknown layer 'Conv2d'\n"
        "  hint: did you mean 'Conv2D'? Layer names are keras.layers class names or\n"
        "    keras.applications model names (case matters).\n")
    assert text.split("=== ")[3].split("\n", 1)[1] == (
        f"{spec}:4:7: unknown layer 'Conv2d'\n"
        "  hint: did you mean 'Conv2D'? Layer names are keras.layers class names or keras.applications model names (case\n"
        "    matters).\n")


def test_a_table_title_longer_than_the_terminal_is_folded_between_words(tmp_path):
    """`data cache`'s title at 80 columns broke 'removes' into 're' and 'moves' (rich leaves a
    soft-wrapped title to the terminal)."""
    from cnntrain.data import load_dataset

    load_dataset("image_folder", path=fx.write_image_tree(tmp_path / "photos", {
        f"{c}/{i}.png": fx.image_bytes(np.full((6, 6, 3), 40 * i, np.uint8), "PNG") for c in "ab" for i in range(2)}))
    text = in_a_terminal(["data", "cache"])
    for part, width in zip(text.split("=== ")[1:], (80, 100, 120)):
        lines = part.splitlines()[1:]
        title = lines[:next(i for i, line in enumerate(lines) if line.startswith("┏"))]
        assert all(len(line) <= width or len(line.split()) == 1 for line in title), (width, title)
        assert " ".join(" ".join(title).split()) == (f"decoded-image cache {tmp_path / 'cnntrain-cache'}: 1 entry, "
                                                     "0.0 MB ('cnntrain data cache clear' removes them)")
        assert "removes them" in title[-1]

"""`cnntrain card RUN`: MODEL_CARD.md from a run folder, laid out as Hugging Face model cards read.

A YAML front matter (library, task, dataset, the test figures as a model-index), then the model,
the training data with its checksums and split sizes, the training procedure and environment, the
evaluation (per class, the most confused pairs), the pictures, how to use and how to reproduce it.
The data facts need the data itself (checksums, split sizes); without it the card says so.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from cnntrain.assess import tta
from cnntrain.errors import CnntrainError, DataNotFound
from cnntrain.runs import atomic
from cnntrain.runs.contents import RunContents, read_run
from cnntrain.runs.folder import resolve_run
from cnntrain.runs.listing import measures_the_model
from cnntrain.runs.numbers import figure, pct

CARD = "MODEL_CARD.md"


def data_facts(run: RunContents, *, data_dir=None) -> dict:
    """Checksums and split sizes of the run's data (read again, never downloaded), or {"missing": why}."""
    from cnntrain.data import image_options, splits, verify_dataset
    from cnntrain.spec import load_spec

    try:
        spec = load_spec(run.path / "spec.yaml")
        d = spec["data"]
        report = verify_dataset(d["dataset"], path=d["path"], data_dir=data_dir, offline=True,
                                **image_options(d))
        parts = splits.prepare(spec, data_dir=data_dir, offline=True)
    except DataNotFound as exc:
        return {"missing": exc.summary}
    except CnntrainError as exc:
        return {"missing": exc.message.splitlines()[0]}
    return {"source": report["source"], "sha256": report["sha256"], "published": report["published"],
            "train": len(parts.x_train), "validation": 0 if parts.x_val is None else len(parts.x_val),
            "test": 0 if parts.x_test is None else len(parts.x_test), "shape": list(parts.shape),
            "classes": list(parts.class_names)}


def _flow(value) -> str:
    """A spec value as one line of YAML, as the spec would say it."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip().removesuffix("...").strip()


def _entry(entry) -> str:
    """A layer entry as the spec writes it: `Conv2D: {filters: 4}`, `Flatten`."""
    if isinstance(entry, dict) and len(entry) == 1:
        (name, args), = entry.items()
        return f"{name}: {_flow(args)}"
    return _flow(entry)


def _num(value, digits=4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _evaluation(run: RunContents) -> dict:
    """eval.json if it measured the run's model; an earlier epoch's figures are not the card's."""
    return run.evaluation if measures_the_model(run.evaluation, run.metrics) else {}


def front_matter(run: RunContents) -> str:
    spec, test = run.spec, (_evaluation(run) or (run.metrics.get("test") or {}))
    dataset = spec["data"]["dataset"]
    matter = {"library_name": "keras", "pipeline_tag": "image-classification",
              "tags": ["cnntrain", "keras", "image-classification"], "datasets": [dataset],
              "metrics": ["accuracy"]}
    if test.get("accuracy") is not None:
        matter["model-index"] = [{"name": spec["name"], "results": [{
            "task": {"type": "image-classification", "name": "Image Classification"},
            "dataset": {"type": dataset, "name": dataset, "split": "test"},
            "metrics": [{"type": "accuracy", "value": round(float(test["accuracy"]), 4)}]}]}]
    return "---\n" + yaml.safe_dump(matter, sort_keys=False) + "---\n"


def _model_section(run: RunContents) -> list[str]:
    spec, m = run.spec, run.metrics
    lines = ["## Model", "", "| # | layer (keras.layers) |", "| --- | --- |"]
    lines += [f"| {i} | `{_entry(entry)}` |" for i, entry in enumerate(spec["model"]["layers"], 1)]
    shape = spec["model"]["input_shape"]
    size = f"{m['parameters']:,} parameters." if m.get("parameters") else "Parameters: not known (the run has not finished)."
    lines += ["", f"Input {' x '.join(str(v) for v in shape) if shape else 'of the dataset'}; preprocessing "
              f"`{spec['preprocess']['normalize']}` is the model's first layer, so `model.keras` takes raw "
              f"0-255 pixels. {size}"]
    return lines


def _data_section(run: RunContents, facts: dict) -> list[str]:
    spec = run.spec
    d = spec["data"]
    lines = ["## Training data", "", "| | |", "| --- | --- |", f"| dataset | `{d['dataset']}` |"]
    if "missing" in facts:
        return lines + ["", f"Checksums and split sizes were not computed: {facts['missing']} "
                        "(give `--data-dir`)."]
    lines.append(f"| source | `{facts['source']}` |")
    for file, digest in facts["sha256"].items():
        published = facts["published"].get(file)
        check = "" if published is None else (" (the published checksum)" if published["match"]
                                               else " (**differs from the published checksum**)")
        lines.append(f"| sha256 of `{os.path.basename(file)}` | `{digest}`{check} |")
    how = {"split": f"{d['validation_split']:g} of the training images, stratified by class, seed {spec['seed']}",
           "test": "the test split", "none": "none"}[d["validation"]]
    limit = f"; a seeded random {d['limit_train']:,} of the training images" if d["limit_train"] else ""
    lines += [f"| images | {' x '.join(str(v) for v in facts['shape'])} |",
              f"| train | {facts['train']:,}{limit} |",
              f"| validation | {facts['validation']:,} ({how}) |",
              f"| test | {facts['test']:,} |",
              f"| classes | {len(facts['classes'])}: {', '.join(str(c) for c in facts['classes'])} |"]
    return lines


def _training_section(run: RunContents) -> list[str]:
    spec, m, env = run.spec, run.metrics, run.env
    best = m.get("best") or {}
    lines = ["## Training procedure", "", "| | |", "| --- | --- |",
             f"| optimizer | `{_entry(spec['compile']['optimizer'])}` |",
             f"| loss | `{_flow(spec['compile']['loss'])}`, label smoothing {spec['compile']['label_smoothing']:g} |",
             f"| batch size | {spec['fit']['batch_size']} |",
             f"| epochs | {m.get('epochs', '-')} of {spec['fit']['epochs']} ({m.get('stopped', 'unfinished')}) |",
             f"| augmentation | {'`' + _flow(spec['augment']) + '`' if spec['augment'] else 'none'} |",
             f"| callbacks | {'`' + _flow(spec['fit']['callbacks']) + '`' if spec['fit']['callbacks'] else 'none'} |",
             f"| seed | {spec['seed']}{' (deterministic ops)' if env.get('deterministic') else ''} |"]
    if best.get("value") is not None:
        lines.append(f"| best {best['monitor']} | {figure(best['monitor'], best['value'])} at epoch {best['epoch']} |")
    if m.get("wall_time_s") is not None:
        speed = f", {m['train_images_per_s']:,.0f} training images/s" if m.get("train_images_per_s") else ""
        lines.append(f"| wall time | {m['wall_time_s']:,.1f} s{speed} |")
    if env:
        lines.append(f"| environment | cnntrain {env.get('cnntrain')}, Python {env.get('python')}, TensorFlow "
                     f"{env.get('tensorflow')}, Keras {env.get('keras')}, NumPy {env.get('numpy')}; "
                     f"{env.get('device', '-')} ({env.get('precision', 'float32')}); {env.get('platform')} |")
    return lines


def _evaluation_section(run: RunContents) -> list[str]:
    ev = _evaluation(run)
    lines = ["## Evaluation", ""]
    if not ev:
        test = run.metrics.get("test") or {}
        older = (f"eval.json measured the model of epoch {run.evaluation['epoch']}; the run has trained to epoch "
                 f"{run.metrics.get('epochs')} since. ") if run.evaluation else ""
        lines.append(f"Test loss {_num(test.get('loss'))}, accuracy {pct(test.get('accuracy'))}"
                     f"{tta.label(test.get('tta', 'none'))} (from the fit). {older}"
                     f"Per-class figures come with `cnntrain evaluate {run.path}`.")
        return lines
    lines += [f"On the {ev.get('split', 'test')} split ({ev['samples']:,} images): loss {_num(ev['loss'])}, "
              f"accuracy **{pct(ev['accuracy'])}**{tta.label(ev.get('tta', 'none'))}, "
              + (f"top-{ev['top_k']} accuracy {pct(ev['top_k_accuracy'])}, " if "top_k_accuracy" in ev else "")
              + f"macro F1 {_num(ev['macro_f1'])}.", "",
              "| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['class']} | {_num(r['precision'])} | {_num(r['recall'])} | {_num(r['f1'])} | {r['support']} |"
              for r in ev["per_class"]]
    pairs = ev.get("most_confused") or []
    if pairs:
        lines += ["", "Most confused:", "", "| true | predicted as | count |", "| --- | --- | ---: |"]
        lines += [f"| {p['true']} | {p['predicted']} | {p['count']} |" for p in pairs]
    return lines


def card_text(run: RunContents, facts: dict) -> str:
    spec, test = run.spec, _evaluation(run) or (run.metrics.get("test") or {})
    classes = len(facts.get("classes") or []) or None
    intro = (f"A convolutional image classifier{f' for the {classes} classes' if classes else ''} of "
             f"`{spec['data']['dataset']}`, trained with cnntrain from this "
             f"folder's `spec.yaml`")
    if test.get("accuracy") is not None:
        intro += f"; test accuracy **{pct(test['accuracy'])}**{tta.label(test.get('tta', 'none'))}"
    parts = [front_matter(run), f"# {spec['name']}", "", intro + ".", "",
             *_model_section(run), "", *_data_section(run, facts), "", *_training_section(run), "",
             *_evaluation_section(run), ""]
    if run.pictures:
        stale = run.evaluation and not _evaluation(run)
        titles = {"curves.png": "Training curves",
                  "confusion.png": f"Confusion matrix of epoch {run.evaluation['epoch']}'s model" if stale
                  else "Confusion matrix"}
        parts += ["## Pictures", ""] + [f"![{titles[p]}]({p})" for p in run.pictures] + [""]
    parts += ["## How to use", "", "```", f"cnntrain predict --run {run.path} image.png", "```", "",
              "or in Python (the model normalizes its input itself):", "", "```python", "import keras",
              f'model = keras.models.load_model("{run.path / "model.keras"}")', "```", "",
              "## Reproduce", "", "```", f"cnntrain fit {run.path / 'spec.yaml'}", "```", "",
              "## Limitations", "",
              f"Trained and tested only on `{spec['data']['dataset']}`: images unlike it (other sizes, "
              "backgrounds, subjects) are classified into its classes all the same, with no warning. The figures "
              "are from one seed; another seed gives somewhat different ones.", ""]
    return "\n".join(parts)


def write_card(arg: str | None, *, runs_root="runs", data_dir=None, out=None) -> Path:
    """Write RUN/MODEL_CARD.md and return its path."""
    run = read_run(resolve_run(arg, runs_root))
    path = Path(out) if out else run.path / CARD
    atomic.write_text(path, card_text(run, data_facts(run, data_dir=data_dir)))
    return path

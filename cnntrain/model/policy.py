"""What a spec may do unless the user trusts it (--trust-spec): write only inside its run folder,
make no network request. A spec is data that may come from anyone (a colleague, a blog post, a
sweep file), so its callbacks come from one allow-list, and every path it names is checked here.
"""
from __future__ import annotations

import posixpath
from pathlib import Path

from cnntrain.runs.folder import LOCK, MARKER, OWN_NAMES
from cnntrain.spec import Spec, dotted, layer_entries
from cnntrain.spec.yamlmarks import show

TRUST = "--trust-spec"
TRUST_HINT = f"if you wrote this spec yourself and trust it, run again with {TRUST}"

# The callbacks a spec may use, with the arguments that name a file or folder they write (and its default).
CALLBACKS = {
    "EarlyStopping": {},
    "ReduceLROnPlateau": {},
    "TerminateOnNaN": {},
    "CSVLogger": {"filename": None},
    "ModelCheckpoint": {"filepath": None},
    "TensorBoard": {"log_dir": "logs"},
}
# Why the others that a spec might name are refused.
REFUSED = {
    "BackupAndRestore": ("it deletes its backup_dir when training ends, and cnntrain keeps its own resume "
                         "state (backup/ in the run folder)",
                         "remove it: every fit is resumable with 'cnntrain fit --resume RUN'"),
    "RemoteMonitor": ("it sends every epoch's metrics to a network address", "remove it"),
    "OrbaxCheckpoint": ("it writes and deletes checkpoints in a folder of its own",
                        "remove it: every fit is resumable with 'cnntrain fit --resume RUN'"),
    "LambdaCallback": ("it runs Python functions", "remove it"),
    "LearningRateScheduler": ("it runs a Python function", "use a schedule: compile.optimizer.<Name>.learning_rate: "
                              "{CosineDecay: {...}}"),
}


def callback(spec: Spec, path, name: str, kwargs: dict, run_dir=None) -> dict:
    """The arguments callback `name` gets: refused unless on the list (or the spec is trusted), and
    with every path it writes resolved inside `run_dir` (left as written when there is none yet)."""
    where = path + (name,)
    if not spec.trusted and name not in CALLBACKS:
        if name in REFUSED:
            reason, fix = REFUSED[name]
            raise spec.error(where, f"callback '{name}' is not allowed in a spec: {reason}", f"{fix}; {TRUST_HINT}",
                             key=True)
        raise spec.error(where, f"callback '{name}' is not allowed in a spec: only {', '.join(CALLBACKS)} are, "
                         "which write only inside the run folder and reach no network", TRUST_HINT, key=True)
    kwargs = dict(kwargs)
    for key, default in CALLBACKS.get(name, {}).items():
        if key in kwargs or default is not None:
            value = kwargs.get(key, default)
            kwargs[key] = inside_run(spec, where + (key,) if key in kwargs else where, f"{name}: {key}", value, run_dir)
    return kwargs


def inside_run(spec: Spec, path, what: str, value, run_dir=None) -> str:
    """`value`, a path relative to the run folder, as the path to write: inside `run_dir`.
    A trusted spec may also name an absolute path; never one of the run's own files."""
    if not isinstance(value, str) or not value.strip():
        raise spec.error(path, f"{what} must be a path relative to the run folder, received: {show(value)}",
                         "e.g. 'log.csv'")
    url = "://" in value
    if not spec.trusted and url:
        raise spec.error(path, f"{what} '{value}' is a URL: a spec writes only inside its run folder and makes "
                         "no network request", TRUST_HINT)
    norm, outside = _normal(value)
    if outside and not spec.trusted:
        raise spec.error(path, f"{what} '{value}' is outside the run folder: a spec writes only inside its run "
                         "folder", f"give a path inside it, such as '{posixpath.basename(norm) or 'log'}'; "
                         + TRUST_HINT)
    if url or outside:
        return value if url or Path(value).is_absolute() or run_dir is None else str(Path(run_dir) / norm)
    top = norm.split("/")[0]
    if top in (".",) + OWN_NAMES + (MARKER, LOCK):
        raise spec.error(path, f"{what} '{value}' is " + ("the run folder itself" if top == "." else
                         f"'{top}', which cnntrain writes itself"), "choose another name, e.g. 'logs/...'")
    if run_dir is None:
        return value
    target = Path(run_dir) / norm
    if not spec.trusted and not target.resolve().is_relative_to(Path(run_dir).resolve()):
        raise spec.error(path, f"{what} '{value}' leads outside the run folder (through a link)", TRUST_HINT)
    return str(target)


def written_names(spec: Spec) -> set[str]:
    """The top-level names inside the run folder that the spec's callbacks write: the run's own,
    to delete with it. A name with a {placeholder} cannot be listed, nor a path outside."""
    names = set()
    for _, name, args in layer_entries(spec["fit"]["callbacks"]):
        for key, default in CALLBACKS.get(name, {}).items():
            value = _positional_first(args, key, default)   # the path is each one's first argument
            if isinstance(value, str) and "://" not in value:
                norm, outside = _normal(value)
                top = norm.split("/")[0]
                if not outside and top != "." and "{" not in top:
                    names.add(top)
    return names


def _positional_first(args, key, default):
    if isinstance(args, dict):
        return args.get(key, default)
    if isinstance(args, list):
        return args[0] if args else default
    return default if args is None else args


def _normal(value: str) -> tuple[str, bool]:
    """`value` as a normal relative path, and whether it leaves the folder it is relative to."""
    norm = posixpath.normpath(value.replace("\\", "/"))
    return norm, Path(value).is_absolute() or norm == ".." or norm.startswith("../")


def check_output_dir(spec: Spec):
    """output.dir, where run folders are made, stays below the current folder unless trusted."""
    value = spec["output"]["dir"]
    if spec.trusted:
        return
    if "://" in value or _normal(value)[1]:
        raise spec.error(("output", "dir"), f"'{dotted(('output', 'dir'))}' '{value}' is outside the current "
                         "folder: a spec writes only below the folder it is run in",
                         f"give a relative folder such as 'runs', or choose the run folder with --out; {TRUST_HINT}")

"""What a spec may do unless the user trusts it (--trust-spec): write only inside its run folder,
make no network request, load no file and run no code. A spec is data that may come from anyone (a
colleague, a blog post, a sweep file), so its callbacks come from one allow-list, its layers may not
be ones that load files or run code, and every path it names (callbacks, output.dir,
fit.tracking_uri) is checked here.
"""
from __future__ import annotations

import inspect
import posixpath
import re
import string
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
# The paths Keras fills in with str.format at save time (ModelCheckpoint: `{epoch:02d}`, `{val_loss:.2f}`).
FORMATTED = {("ModelCheckpoint", "filepath")}
# A format field: a plain name (epoch, batch or a logged figure) with at most a number format.
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_FORMAT = re.compile(r"0?[0-9]{0,2}(\.[0-9]{1,2})?[deEfFgG%]?")
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
            at = where + (key,) if key in kwargs else where
            kwargs[key] = inside_run(spec, at, f"{name}: {key}", value, run_dir)
            if (name, key) in FORMATTED:
                _fields_only_plain(spec, at, f"{name}: {key}", value, run_dir)
            if run_dir is not None and key != "log_dir" and "://" not in value:
                # Keras opens a log or checkpoint file without making its folder (TensorBoard makes its own).
                Path(kwargs[key]).parent.mkdir(parents=True, exist_ok=True)
    return kwargs


def _fields_only_plain(spec: Spec, path, what: str, value: str, run_dir):
    """Keras formats ModelCheckpoint's path with str.format, which reaches attributes and items
    (`{epoch.__doc__[127]}` is '.'): only plain names with a number format, in the file's name
    alone, are allowed; the path as formatted must be inside the run folder too."""
    example = "e.g. 'ckpt/epoch-{epoch:02d}-{val_loss:.3f}.keras'"
    try:
        fields = [(name, spec_, conversion) for _, name, spec_, conversion in string.Formatter().parse(value)
                  if name is not None]
    except ValueError as exc:
        raise spec.error(path, f"{what} '{value}' is not a valid format: {exc}",
                         f"write a literal brace as {{{{ or }}}}; {example}") from None
    for name, format_spec, conversion in fields:
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{format_spec}" if format_spec else "") + "}"
        if not _FIELD.fullmatch(name) or conversion or not _NUMBER_FORMAT.fullmatch(format_spec or ""):
            raise spec.error(path, f"{what} '{value}' has the field '{shown}': only plain {{epoch}}, {{batch}} and "
                             "metric names are filled in, with at most a number format such as {epoch:02d}",
                             example)
    if fields and ("{" in posixpath.dirname(value.replace("\\", "/"))):
        raise spec.error(path, f"{what} '{value}' has a field in a folder name: only the file's name may have one",
                         example)
    for epoch, figure in ((1, 0.5), (10**9, -1.5e300), (1, float("nan"))):   # the path as Keras will fill it in
        filled = {name: epoch if name in ("epoch", "batch") else figure for name, _, _ in fields}
        try:
            formatted = value.format(**filled)
        except ValueError as exc:
            raise spec.error(path, f"{what} '{value}' cannot be filled in: {exc}",
                             "{epoch} and {batch} are integers, metrics decimals: use d for the first, "
                             f"f, e or g for the others; {example}") from None
        if fields:
            inside_run(spec, path, f"{what} (filled in)", formatted, run_dir)


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


def check_spec(spec: Spec):
    """What a spec may do, settled before anything is built or read: its output folders, its tracking
    store and its layers (its callbacks are checked as they are built, with their arguments)."""
    check_output_dir(spec)
    check_tracking_uri(spec)
    for part in (("model", "layers"), ("augment",)):
        allowed_layers(spec, part)


def check_output_dir(spec: Spec):
    """output.dir, where run folders are made, stays below the current folder unless trusted."""
    value = spec["output"]["dir"]
    if spec.trusted:
        return
    if "://" in value or _normal(value)[1]:
        raise spec.error(("output", "dir"), f"'{dotted(('output', 'dir'))}' '{value}' is outside the current "
                         "folder: a spec writes only below the folder it is run in",
                         f"give a relative folder such as 'runs', or choose the run folder with --out; {TRUST_HINT}")


def check_tracking_uri(spec: Spec):
    """fit.tracking_uri: unless trusted, only an SQLite store inside output.dir (MLflow's artifacts go
    beside it). A server would receive the spec, env.json and the models; an absolute path is anywhere."""
    value, where = spec["fit"]["tracking_uri"], ("fit", "tracking_uri")
    if spec.trusted or value is None:
        return
    output = posixpath.normpath(spec["output"]["dir"])
    match = re.fullmatch(r"sqlite:///([^?#]+)", value)
    norm, outside = _normal(match[1]) if match else ("", True)
    inside = not outside and (output == "." or norm.startswith(output + "/")) and \
        Path(norm).resolve().is_relative_to(Path(output).resolve())
    if not inside:
        raise spec.error(where, f"'{dotted(where)}' '{value}' is not an SQLite store inside output.dir "
                         f"('{spec['output']['dir']}'): a spec writes only there and makes no network request",
                         f"leave it out (the store is then sqlite:///{output}/mlflow.db), or give "
                         f"sqlite:///{output}/NAME.db; {TRUST_HINT}")


# A layer whose constructor takes one of these loads a file or runs code: not spec data. Found by
# the arguments of every class in keras.layers, so a new such class is refused the day Keras adds it.
CODE_OR_FILE_ARGUMENTS = {
    "filepath": "it loads the model stored at its filepath and runs that model's graph",
    "function": "it runs Python code (its 'function')",
    "call_fn": "it runs Python code (its 'call_fn')",
    "init_fn": "it runs Python code (its 'init_fn')",
    "module": "it runs code (its 'module')",
}
# A vocabulary given as text is the path of a file that the layer reads (StringLookup, TextVectorization).
FILE_WHEN_TEXT = ("vocabulary",)


def allowed_layers(spec: Spec, part) -> list:
    """The layer list at `part` (model.layers or augment), once it is known to hold no layer that loads
    a file or runs code, nested ones included ({TFSMLayer: {...}} as an argument), or the spec is trusted."""
    items = spec.values
    for key in part:
        items = items[key]
    if not spec.trusted:
        for i, name, args in layer_entries(items):
            _layer_allowed(spec, part + (i,), name, args)
    return items


def _layer_allowed(spec: Spec, path, name, args):
    """`path` leads to the mapping whose key `name` is the class; its arguments are walked too."""
    from cnntrain.backend import keras

    cls = getattr(keras.layers, name, None) if not name.startswith("_") else None
    if isinstance(cls, type):
        params = inspect.signature(cls.__init__).parameters
        reason = next((why for arg, why in CODE_OR_FILE_ARGUMENTS.items() if arg in params), None)
        hint = f"remove it; {TRUST_HINT}"
        for arg in FILE_WHEN_TEXT:
            if reason is None and arg in params and isinstance(args, dict) and isinstance(args.get(arg), str):
                reason = f"its {arg} '{args[arg]}' is the path of a file that it reads"
                hint = f"give the {arg} as a list in the spec; {TRUST_HINT}"
        if reason:
            raise spec.error(path + (name,), f"layer '{name}' is not allowed in a spec: {reason}; a spec is data, "
                             "and layers that load files or run code are refused", hint, key=True)
    _walk(spec, path + (name,), args)


def _walk(spec: Spec, path, value):
    # A nested {ClassName: {arguments}} becomes a Keras object: wrappers take layers this way.
    if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value)), str):
        (name, args), = value.items()
        if name[:1].isupper():
            return _layer_allowed(spec, path, name, args)
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        _walk(spec, path + (key,), child)

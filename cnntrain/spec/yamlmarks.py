"""Plain YAML to Python values, with the line and column of every value and key.

Safe and bounded: no tags that build objects, no complex keys, and limits on size, nesting,
alias expansion and numbers, so that any file a stranger sends ends in values or a SpecError.
"""
from __future__ import annotations

import re

import yaml

from cnntrain.errors import SpecError, YamlSyntaxError

# Limits that keep a hostile or broken spec from hanging the CLI or filling memory. A real spec
# is a few kilobytes, a dozen levels deep and a few hundred values.
MAX_DEPTH = 50              # levels of nesting
MAX_NODES = 100_000         # values after expanding aliases and merge keys ("billion laughs")
MAX_BYTES = 1_000_000       # the size of a spec file
MAX_FLOW_DEPTH = 100        # '[' and '{' open at once: PyYAML's scanner is quadratic in this
MAX_INT = 2 ** 63           # integers beyond int64 fit nothing a spec sets, and may not print
MAX_SHOWN = 200             # characters of a value quoted in a message

_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_MERGE, _VALUE = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"


def shorten(text, limit: int = MAX_SHOWN) -> str:
    """`text` cut to `limit` characters with '...', for quoting in a message."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show(value) -> str:
    """A value as quoted in a message: its repr (shortened) and its type."""
    return f"{shorten(repr(value))} ({type(value).__name__})" if value is not None else "nothing (null)"


# ---------------------------------------------------------------- YAML 1.2 core schema
# PyYAML resolves plain scalars by YAML 1.1: `2e-3` is a string (1.1 floats need a dot), `1:30` is
# 90 (sexagesimal), `yes`/`no`/`on`/`off` are booleans, `017` is octal. People write specs by the
# YAML 1.2 core schema, which is also what JSON and most other tools mean.
_BOOL, _INT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"
_FLOAT, _NULL = "tag:yaml.org,2002:float", "tag:yaml.org,2002:null"
_DECIMAL = re.compile(r"[-+]?[0-9]+")
_OCTAL, _HEX = re.compile(r"0o([0-7]+)"), re.compile(r"0x([0-9a-fA-F]+)")
_REAL = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                   r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_BOOLEAN = re.compile(r"true|True|TRUE|false|False|FALSE")
_CORE = [
    (_BOOL, _BOOLEAN, "tTfF"),
    (_NULL, re.compile(r"~|null|Null|NULL|"), ["~", "n", "N", ""]),
    (_INT, re.compile(f"{_DECIMAL.pattern}|{_OCTAL.pattern}|{_HEX.pattern}"), "-+0123456789"),
    (_FLOAT, _REAL, "-+0123456789."),
    (_MERGE, re.compile(r"<<"), "<"),
]


def _resolvers(*tables) -> dict:
    """PyYAML's implicit resolver table (first character -> [(tag, regex)]): the core schema's
    rules after those of `tables`."""
    resolvers: dict = {}
    for table in tables:
        for first, rules in table.items():
            resolvers.setdefault(first, []).extend(rules)
    for tag, pattern, firsts in _CORE:
        for first in firsts:
            # PyYAML's resolver calls match(); the anchors make it a full match.
            resolvers.setdefault(first, []).append((tag, re.compile(f"^(?:{pattern.pattern})$")))
    return resolvers


def _core_int(loader, node):
    text = loader.construct_scalar(node)
    for pattern, base in ((_DECIMAL, 10), (_OCTAL, 8), (_HEX, 16)):
        found = pattern.fullmatch(text)
        if found:
            return int(found.group(found.lastindex or 0), base)
    raise ValueError(f"invalid literal for int() with base 10: {text!r}")


def _core_float(loader, node):
    text = loader.construct_scalar(node)
    if not (_REAL.fullmatch(text) or _DECIMAL.fullmatch(text)):
        raise ValueError(f"could not convert string to float: {text!r}")
    return float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))


def _core_bool(loader, node):
    text = loader.construct_scalar(node)
    if not _BOOLEAN.fullmatch(text):
        raise ValueError(f"YAML 1.2 booleans are true and false, received: {text!r}")
    return text.lower() == "true"


class CoreLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with the YAML 1.2 core schema: no timestamps unless tagged."""

    yaml_implicit_resolvers = _resolvers()


CoreLoader.add_constructor(_INT, _core_int)
CoreLoader.add_constructor(_FLOAT, _core_float)
CoreLoader.add_constructor(_BOOL, _core_bool)


class CoreDumper(yaml.SafeDumper):
    """Quotes every string that YAML 1.1 or 1.2 would read as something else, so spec.yaml reads
    back the same here and in any other YAML tool."""

    yaml_implicit_resolvers = _resolvers(yaml.SafeDumper.yaml_implicit_resolvers)


def dump_yaml(values) -> str:
    return yaml.dump(values, Dumper=CoreDumper, sort_keys=False, default_flow_style=None)


def _at(node, file) -> dict:
    return {"file": file, "line": node.start_mark.line + 1, "column": node.start_mark.column + 1}


class _Builder:
    """Turns a composed YAML node tree into Python values, recording the line and column of every
    value and key, and refusing what a spec never needs: tags that build objects, complex keys,
    unbounded nesting or expansion, numbers beyond int64."""

    def __init__(self, loader, file):
        self.loader, self.file = loader, file
        self.marks, self.key_marks = {}, {}
        self.count = 0

    def value(self, node, path):
        self.count += 1
        if self.count > MAX_NODES or len(path) > MAX_DEPTH:
            raise SpecError("the spec is nested too deeply or too large (aliases expanding?)", **_at(node, self.file),
                            hint=f"a spec needs at most {MAX_DEPTH} levels; remove recursive aliases")
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                raise _tag_error(node, self.file)
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise _tag_error(node, self.file)
            return [self.value(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def mapping(self, node, path):
        """Keys in order; `<<: *anchor` (or a list of them) merges mappings whose keys this one may
        override, as YAML defines it. Merged values count against MAX_NODES like any other."""
        merged, own = {}, []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise SpecError("a merge key '<<' takes a mapping or a list of mappings",
                                    **_at(source, self.file), hint="e.g. '<<: *defaults' where '&defaults {...}'")
                for key, value in self.value(source, path).items():
                    merged.setdefault(key, value)      # the first mapping listed wins, as YAML says
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        result, seen = merged, set()
        for key_node, value_node in own:
            key = self.key(key_node)
            if key in seen:
                raise SpecError(f"duplicate key '{shorten(key, 60)}'", **_at(key_node, self.file),
                                hint=f"'{shorten(key, 60)}' is already set above at line "
                                     f"{self.key_marks[path + (key,)][0]}")
            seen.add(key)
            self.key_marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.value(value_node, path + (key,))
        return result

    def key(self, node):
        if not isinstance(node, yaml.ScalarNode):
            kind = "list" if isinstance(node, yaml.SequenceNode) else "mapping"
            raise SpecError(f"a mapping key must be a plain name, received: a {kind}", **_at(node, self.file),
                            hint="keys are names such as 'fit' or 'filters'; check for a stray '?' or brackets")
        if node.tag == _VALUE:   # the key '=' (YAML 1.1's value key) is plain text here
            return "="
        key = self.scalar(node)
        if not isinstance(key, (str, int, float, bool)):
            raise SpecError(f"a mapping key must be a plain name, received: {show(key)}", **_at(node, self.file))
        return key

    def scalar(self, node):
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            raise _tag_error(node, self.file) from None
        except Exception as exc:  # PyYAML's own converters raise ValueError, KeyError, ...
            kind = node.tag.rsplit(":", 1)[-1]
            reason = str(exc).split(":")[0] if "Exceeds the limit" in str(exc) else str(exc)
            reason = f" ({shorten(reason, 100)})" if isinstance(exc, ValueError) else ""
            raise SpecError(f"'{shorten(node.value, 60)}' is not a valid YAML {shorten(kind, 40)}{reason}",
                            **_at(node, self.file), hint="quote it to keep it as text") from None
        if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT <= value < MAX_INT:
            raise SpecError("number too large: integers in a spec are at most 2**63 - 1", **_at(node, self.file),
                            hint="no setting needs more; quote it if it is meant as text")
        return value


def _tag_error(node, file):
    return SpecError(f"YAML tag '{shorten(node.tag, 100)}' is not allowed", **_at(node, file),
                     hint="specs are plain YAML: no tags that build Python objects")


def _flow_depth(text: str) -> int:
    """The most '[' and '{' open at once, counted over the raw text (brackets inside quotes and
    comments too: an over-estimate, which only matters far beyond any real spec)."""
    depth = deepest = 0
    for match in re.finditer(r"[\[\]{}]", text):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


def parse_yaml(text: str, file: str = "<spec>"):
    """Plain YAML to Python values, with the line and column of every value and key."""
    if len(text) > MAX_BYTES:
        raise SpecError(f"the spec is too large: {len(text):,} characters, at most {MAX_BYTES:,}", file=file,
                        hint="a spec is a short YAML file; is this the right file?")
    if _flow_depth(text) > MAX_FLOW_DEPTH:
        raise SpecError("the spec is nested too deeply", file=file,
                        hint=f"a spec needs at most {MAX_DEPTH} levels of '[' and '{{'")
    loader = None
    try:
        loader = CoreLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}, {}
        builder = _Builder(loader, file)
        return builder.value(node, ()), builder.marks, builder.key_marks
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = shorten(exc.problem or exc.context or "invalid YAML")
        raise YamlSyntaxError(f"YAML syntax error: {problem}", file=file,
                        line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
                        hint="check the indentation and the ':' after each key on this line or the one above") from None
    except yaml.reader.ReaderError as exc:
        at = exc.position if isinstance(exc.position, int) else None
        what = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "byte"
        raise SpecError(f"the spec holds a {what}, which YAML does not allow ({shorten(exc.reason, 80)})",
                        file=file, line=None if at is None else text.count("\n", 0, at) + 1,
                        column=None if at is None else at - text.rfind("\n", 0, at),
                        hint="remove control characters; save the spec as plain UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML syntax error: {shorten(exc)}", file=file) from None
    except RecursionError:
        raise SpecError("the spec is nested too deeply", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()

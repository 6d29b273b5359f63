"""The documentation says what the code does (sqlite-utils' way): every command and option of the
CLI is documented, every test, module and page the docs name exists, every spec in them passes
`cnntrain check`, and docs/spec.md's defaults table is spec/schema.DEFAULTS. Nothing here trains."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest
import yaml
from helpers.cli import run_cli

from cnntrain.cli import cli
from cnntrain.spec.schema import DEFAULTS, REQUIRED

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
# The short forms of test files the reliability tables use.
ABBREVIATIONS = {"R": "tests/test_reliability.py", "F": "tests/test_fuzz.py"}
FRAGMENT = "# fragment"


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under `heading` (a whole heading line) up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("#") and len(lines[i]) - len(lines[i].lstrip("#")) <= level), len(lines))
    return "\n".join(lines[start + 1:end])


def options_of(command: click.Command) -> list[str]:
    return [name for p in command.params if isinstance(p, click.Option) for name in (*p.opts, *p.secondary_opts)]


def commands() -> dict[str, click.Command]:
    ctx = click.Context(cli)
    return {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}


def undocumented_options(page: str) -> list[str]:
    """'fit --resume' for each option of each command missing from that command's section of `page`."""
    missing = []
    for name, command in [("", cli), *commands().items()]:
        heading = f"### `cnntrain {name}`" if name else "### `cnntrain` (every command)"
        if heading not in page.splitlines():
            missing.append(f"{name or 'cnntrain'}: no section '{heading}'")
            continue
        body = section(page, heading)
        missing += [f"{name or 'cnntrain'} {option}" for option in options_of(command)
                    if option != "--help" and f"`{option}`" not in body]
    return missing


def test_every_command_and_option_is_documented():
    assert undocumented_options(text_of(REPO / "docs" / "commands.md")) == []


def test_every_command_is_in_the_overview_table():
    page = text_of(REPO / "docs" / "commands.md")
    overview = page[:page.index("## Every option")]
    assert [name for name in commands() if f"`cnntrain {name}" not in overview] == []


def test_an_undocumented_option_is_found():
    page = text_of(REPO / "docs" / "commands.md").replace("| `--csv` |", "| csv |")
    assert undocumented_options(page) == ["predict --csv"]


# ---------------------------------------------------------------- tests, modules and pages cited

def defined_tests() -> dict[str, set[str]]:
    """Each test file (as 'tests/test_x.py') with the test functions it defines."""
    found = {}
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(text_of(path))
        found[f"tests/{path.name}"] = {n.name for n in ast.walk(tree)
                                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")}
    return found


CITATION = re.compile(r"(?:(tests/test_\w+\.py)::|\b([RF])::|::)?(?<![\w/.])(test_\w+)(?![\w.])")


def cited_tests(text: str) -> list[tuple[str | None, str]]:
    """(file or None, test name) for every test a text cites. `::name` belongs to the file named last
    on the same line (a table cell lists `tests/x.py::a`, `::b`); a bare name to no file in particular."""
    cited = []
    for line in text.splitlines():
        last = None
        for code in re.findall(r"`([^`]*)`", line):
            for file, short, name in CITATION.findall(code):
                if re.fullmatch(r"tests/test_\w+\.py", code.strip()):
                    break
                file = file or ABBREVIATIONS.get(short) or (last if f"::{name}" in code else None)
                last = file or last
                cited.append((file, name))
            if re.fullmatch(r"tests/test_\w+\.py", code.strip()):
                last = code.strip()
    return cited


def missing_tests(text: str, defined: dict[str, set[str]]) -> list[str]:
    everywhere = set().union(*defined.values())
    return [f"{file or '?'}::{name}" for file, name in cited_tests(text)
            if name not in (defined.get(file, set()) if file else everywhere)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_test_the_docs_cite_exists(page):
    assert missing_tests(text_of(page), defined_tests()) == []


def test_a_cited_test_that_does_not_exist_is_found():
    defined = {"tests/test_a.py": {"test_one", "test_two"}, "tests/test_reliability.py": {"test_kill"}}
    text = ("| `tests/test_a.py::test_one`, `::test_two`, `::test_three` | `R::test_kill`, `R::test_one` |\n"
            "`tests/test_a.py`: `test_two`, `test_four`; tested by `test_kill`\n")
    assert missing_tests(text, defined) == ["tests/test_a.py::test_three", "tests/test_reliability.py::test_one",
                                            "?::test_four"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_the_docs_name_exists(page):
    named = set(re.findall(r"`((?:cnntrain|tests|benchmarks|configs|searches)/[\w./-]*\w)`", text_of(page)))
    assert sorted(p for p in named if not (REPO / p).exists()) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_reaches_its_page_and_heading(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text_of(page)):
        if "://" in target:
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(target)
        elif anchor and anchor not in anchors(text_of(path)):
            broken.append(target)
    assert broken == []


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#+ ", line)]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_the_module_table_lists_every_module():
    table = section(text_of(REPO / "docs" / "architecture.md"), "## Every module")
    listed = re.findall(r"^\| `(cnntrain/[\w/]+\.py)` \|", table, re.MULTILINE)
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "cnntrain").rglob("*.py"))
    assert sorted(listed) == modules


# ---------------------------------------------------------------- specs and defaults

def yaml_blocks() -> list[tuple[str, str]]:
    return [(f"{page.name}:{text_of(page)[:m.start()].count(chr(10)) + 2}", m.group(1))
            for page in PAGES for m in re.finditer(r"^```yaml\n(.*?)^```", text_of(page), re.MULTILINE | re.DOTALL)]


def test_every_yaml_block_is_a_spec_that_passes_check(tmp_path):
    specs = [(where, text) for where, text in yaml_blocks() if not text.startswith(FRAGMENT)]
    assert len(specs) >= 2   # the README's own-images spec and docs/spec.md's annotated one
    failed = []
    for i, (where, text) in enumerate(specs):
        path = tmp_path / f"block{i}.yaml"
        path.write_text(text, encoding="utf-8")
        result = run_cli("check", path)
        if result.exit_code != 0 or not result.stdout.startswith(f"OK {path}: "):
            failed.append(f"{where}: {result.stderr.strip() or result.stdout.strip()}")
    assert failed == []


def test_every_fragment_is_yaml():
    fragments = [(where, text) for where, text in yaml_blocks() if text.startswith(FRAGMENT)]
    assert fragments and all(isinstance(yaml.safe_load(text), dict) for _, text in fragments)


def flat(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def defaults_table() -> dict:
    table = section(text_of(REPO / "docs" / "spec.md"), "## Every key and its default")
    rows = re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", table, re.MULTILINE)
    return {key: REQUIRED if value == "required" else yaml.safe_load(value) for key, value in rows}


def test_the_defaults_table_is_the_schema():
    assert defaults_table() == flat(DEFAULTS)

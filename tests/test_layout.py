"""The layout the README promises: scripts call the stage modules; "Where things are" is true.

Every ``workflow/scripts/*.py`` imports its one function from an ``echolatent.stages`` module
(and otherwise only the standard library, torch and the logging helper
:func:`echolatent.stages.logs.log_to`, which it calls first), and README's "Where things are" table
names every rule of ``workflow/rules/*.smk`` once, with the function its script calls and
logic modules that exist.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))
STAGES = "echolatent.stages."
LOG_TO = "echolatent.stages.logs.log_to"  # every script's first call, besides its one stage function


def imports_of(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import statement under ``tree`` (names empty for ``import x``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", [alias.name for alias in node.names]))
    return found


def imported_modules(script: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import statement of a script."""
    return imports_of(ast.parse(script.read_text(), filename=str(script)))


def stage_functions(script: Path) -> list[str]:
    """The dotted names a script imports from the stage modules, but the logging helper."""
    return [f"{module}.{name}" for module, names in imported_modules(script) if module.startswith(STAGES)
            for name in names if f"{module}.{name}" != LOG_TO]


def rule_scripts() -> dict[str, str | None]:
    """Rule name -> the file name of its script (None for a rule without one), from the rule files."""
    rules = {}
    for path in RULE_FILES:
        blocks = re.split(r"^(?=(?:rule|checkpoint) \w+:)", path.read_text(), flags=re.M)
        for block in blocks:
            header = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if header:
                script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", block, flags=re.M)
                rules[header.group(1)] = Path(script.group(1)).name if script else None
    return rules


def where_things_are() -> dict[str, tuple[str, list[str]]]:
    """README's "Where things are" table: rule -> (stage function, names in the logic column)."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## Where things are\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert match, "README.md has no '## Where things are' section"
    rows = {}
    for line in match.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        rule = cells[0].strip("`")
        assert rule not in rows, f"rule {rule} has two rows"
        rows[rule] = (cells[1].strip("`"), re.findall(r"`(echolatent[\w.]*)`", cells[2]))
    return rows


def resolve(name: str):
    """The module, or the attribute of a module, a dotted name names."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_import_echolatent_only_from_stage_modules(script):
    outside = [module for module, _ in imported_modules(script)
               if module.split(".")[0] == "echolatent" and not module.startswith(STAGES)]
    assert not outside, f"{script.name} imports {outside}; scripts import from echolatent.stages.* only"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_import_nothing_but_the_standard_library_and_torch(script):
    others = [module for module, _ in imported_modules(script)
              if module.split(".")[0] not in (*sys.stdlib_module_names, "echolatent", "torch")]
    assert not others, f"{script.name} imports {others}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_call_one_stage_function(script):
    names = stage_functions(script)
    assert len(names) == 1, f"{script.name} imports {names} from the stage modules; one function per script"
    assert callable(resolve(names[0])), names[0]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_log_to_the_rules_log_file_before_anything_else(script):
    # before torch or a stage module is imported, so what an import prints reaches the log too
    body = ast.parse(script.read_text(), filename=str(script)).body
    docstring_or_import = lambda node: isinstance(node, (ast.Import, ast.ImportFrom)) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    first = next((i for i, node in enumerate(body) if not docstring_or_import(node)), len(body))
    assert first < len(body) and ast.unparse(body[first]) == "log_to(snakemake.log[0], attempt=snakemake.resources.attempt)", \
        f"{script.name}: the first statement after the imports is not log_to(snakemake.log[0], attempt=...)"
    early = [module for node in body[:first] for module, _ in imports_of(node)]
    late = [module for module in early
            if module.split(".")[0] not in sys.stdlib_module_names and module != LOG_TO.rpartition(".")[0]]
    assert not late, f"{script.name} imports {late} before it calls log_to"


def test_every_rule_has_a_row_in_where_things_are():
    missing = sorted(set(rule_scripts()) - set(where_things_are()))
    assert not missing, f"rules without a row in README's 'Where things are': {missing}"


def test_every_row_of_where_things_are_is_a_rule():
    unknown = sorted(set(where_things_are()) - set(rule_scripts()))
    assert not unknown, f"README's 'Where things are' names rules that workflow/rules/*.smk lacks: {unknown}"


@pytest.mark.parametrize("rule", sorted(where_things_are()))
def test_where_things_are_names_the_function_the_rules_script_calls(rule):
    function = where_things_are()[rule][0]
    assert function.startswith(STAGES) and callable(resolve(function)), function
    script = rule_scripts().get(rule)
    if script is None:
        pytest.skip(f"rule {rule} is not in workflow/rules/*.smk (reported by the test above)")
    called = stage_functions(REPO / "workflow" / "scripts" / script)
    assert called == [function], f"rule {rule} runs {script}, which calls {called}, not {function}"


@pytest.mark.parametrize("rule", sorted(where_things_are()))
def test_where_things_are_names_logic_that_imports(rule):
    logic = where_things_are()[rule][1]
    assert logic, f"rule {rule}: the logic column names no echolatent module"
    for name in logic:
        resolve(name)  # raises when the module or name does not exist

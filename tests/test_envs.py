"""The per-rule conda envs provide what their rules' scripts import (a static check: the envs cannot be
built here, no conda channel is reachable).

For every rule, the script's imports and, through them, the package modules it reaches are
collected from the source: module-level imports are followed transitively; inside the stage
function the script calls, the imports in its body too (the stages import heavy libraries
there, lazily), and from those modules onwards again their module-level imports. Every
third-party library that a reached module imports, at module level or in any of its
functions, must be provided by a package of the rule's env file.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from test_layout import RULE_FILES, stage_functions

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

#: Import name -> conda-forge package providing it.
PROVIDERS = {
    "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "pyarrow": "pyarrow", "h5py": "h5py",
    "SimpleITK": "simpleitk", "skimage": "scikit-image", "yaml": "pyyaml", "jsonschema": "jsonschema",
    "torch": "pytorch", "sklearn": "scikit-learn", "statsmodels": "statsmodels", "matplotlib": "matplotlib-base",
    "cc3d": "connected-components-3d",
}


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(nodes, package: str) -> set[str]:
    """Absolute module names imported by these statements (relative ones resolved against ``package``)."""
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            # `from echolatent.x import y` may import the submodule y
            found |= {f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}")}
    return found


def top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements executed on import (module body, incl. inside if/try blocks, not in functions)."""
    out, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            stack += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
            for handler in getattr(node, "handlers", []):
                stack += handler.body
    return out


def reached(start: set[str]) -> set[str]:
    """Every module name reached from ``start`` through module-level imports of package modules."""
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        # a package's __init__ runs before any of its submodules
        parents = [".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))]
        todo += parents + sorted(imports(top_level_imports(ast.parse(path.read_text())), package))
    return seen


def stage_function_imports(dotted: str) -> set[str]:
    """Imports inside the body of the stage function ``echolatent.stages.x.f``."""
    module, function = dotted.rsplit(".", 1)
    tree = ast.parse(module_file(module).read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return imports([n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))],
                           module.rsplit(".", 1)[0])
    raise AssertionError(f"{dotted} not found")


def third_party(modules: set[str]) -> set[str]:
    """The third-party libraries ``modules`` are, or that the package modules among them import anywhere
    (in their functions too: any function of a module the rule loads may run)."""
    names = set(modules)
    for name in modules:
        path = module_file(name)
        if path is not None:
            tree = ast.parse(path.read_text())
            names |= {n for n in imports([x for x in ast.walk(tree) if isinstance(x, (ast.Import, ast.ImportFrom))],
                                         name) if not n.startswith("echolatent")}
    tops = {name.split(".")[0] for name in names}
    return {top for top in tops if top and top not in sys.stdlib_module_names and top not in ("echolatent", "snakemake")}


def rules_with_envs() -> list[tuple[str, str, str]]:
    """(rule, script file name, env file name) of every rule with a script."""
    found = []
    for path in RULE_FILES:
        for block in re.split(r"^(?=(?:rule|checkpoint) \w+:)", path.read_text(), flags=re.M):
            header = re.match(r"(?:rule|checkpoint) (\w+):", block)
            script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", block, flags=re.M)
            env = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", block, flags=re.M)
            if header and script:
                assert env, f"rule {header.group(1)} has a script but no conda env"
                found.append((header.group(1), Path(script.group(1)).name, Path(env.group(1)).name))
    return found


def env_packages(name: str) -> set[str]:
    spec = yaml.safe_load((REPO / "envs" / name).read_text())
    packages = set()
    for item in spec["dependencies"]:
        if isinstance(item, str):
            packages.add(re.match(r"[\"']?([A-Za-z0-9_.-]+)", item).group(1))
        elif isinstance(item, dict):  # the pip section: packages, not options (--no-deps) or paths (..)
            packages |= {re.match(r"[A-Za-z0-9_-]+", entry).group(0) for entry in item.get("pip", [])
                         if re.match(r"[A-Za-z]", entry)}
    return packages


RULES = rules_with_envs()


@pytest.mark.parametrize("rule, script, env", RULES, ids=[r[0] for r in RULES])
def test_the_env_of_each_rule_provides_what_its_script_imports(rule, script, env):
    path = REPO / "workflow" / "scripts" / script
    tree = ast.parse(path.read_text())
    start = imports([n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], "")
    for function in stage_functions(path):
        start |= stage_function_imports(function)
    needed = third_party(reached(start))
    provided = env_packages(env)
    missing = sorted(top for top in needed if PROVIDERS.get(top, top) not in provided)
    assert not missing, f"rule {rule} ({script}) imports {missing}, which envs/{env} does not provide"


def test_the_check_sees_lazy_imports_of_the_stage_function():
    # the encoding stage imports torch only inside its functions; the check must still see it
    needed = third_party(reached(stage_function_imports("echolatent.stages.encode.decode_codes_stage")))
    assert {"torch", "h5py", "numpy"} <= needed


def test_envs_pin_the_versions_pyproject_asks_for():
    project = (REPO / "pyproject.toml").read_text()
    floors = dict(re.findall(r'"([A-Za-z0-9_-]+)>=([0-9.]+)"', project))
    names = {"SimpleITK": "simpleitk", "scikit-image": "scikit-image", "torch": "pytorch"}
    for env in sorted((REPO / "envs").glob("*.yaml")):
        text = env.read_text()
        for package, floor in floors.items():
            conda = names.get(package, package.lower())
            found = re.search(rf"^\s*-\s*[\"']?{re.escape(conda)}(?:\[version=')?\s*>=\s*([0-9.]+)", text, flags=re.M)
            if found:
                assert found.group(1) == floor, f"{env.name}: {conda} >= {found.group(1)}, pyproject asks >= {floor}"

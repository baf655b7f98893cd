"""The tree's floors, in folders: the ground floor (data.py, model.py and ground/), the recipe and
the reader beside each other on it (recipe/, reader/), the web server over the reader (server/),
the scripts at the top, and the harness that only tests and benchmarks use. A module imports its
own folder and the floors below, never a floor above nor a folder beside it."""

import ast
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

SCRIPTS = ("train", "evaluate", "tune", "export", "predict", "serve")
FLOORS = {"ground": 0, "recipe": 1, "reader": 1, "server": 2, "harness": 4}
FLOORS.update(dict.fromkeys(SCRIPTS, 3))  # each script a folder of its own: none imports another
GROUND_FILES = {"data", "model"}  # the design card's modules, at the top, on the ground floor
TOP_LEVEL_MODULES = 12  # the scripts, data.py, model.py and at most a few more
LONGEST_MODULE = 400  # lines


def folder_of(module: str) -> str | None:
    """The folder (or top-level module) a dotted name belongs to; None for other libraries."""
    top = module.split(".")[0]
    if top in FLOORS or top in GROUND_FILES:
        return "ground" if top in GROUND_FILES else top
    if top in {"bench", "tests", "conftest"} or (PROJECT_ROOT / f"{top}.py").exists():
        return "elsewhere"  # a module of the project's that no floor may import (or a new, unplaced one)
    return None


def project_modules() -> dict[str, Path]:
    """Every module of the project but its tests and benchmarks, by dotted name."""
    packages = [path.parent for path in PROJECT_ROOT.glob("*/__init__.py") if path.parent.name != "bench"]
    files = [*PROJECT_ROOT.glob("*.py"), *(path for package in packages for path in package.glob("*.py"))]
    return {
        ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in set(files)
    }


def imported(path: Path) -> set[str]:
    """The modules a file imports, anywhere in it (deferred imports inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def upward_arrows() -> list[str]:
    """Imports of a floor above, of a folder beside, or of something no floor may import."""
    arrows = []
    for module, path in project_modules().items():
        folder = folder_of(module)
        for name in imported(path):
            target = folder_of(name)
            if target is None or target == folder:
                continue
            if target == "elsewhere" or FLOORS[target] >= FLOORS[folder]:
                arrows.append(f"{module} (floor {FLOORS[folder]}) imports {name}")
    return arrows


def test_every_module_of_the_project_belongs_to_a_floor():
    unplaced = [module for module in project_modules() if folder_of(module) in (None, "elsewhere")]
    assert not unplaced, f"place these on a floor in test_structure.py: {unplaced}"


def test_no_import_runs_up_a_floor_or_across_to_a_folder_beside():
    assert upward_arrows() == []


def test_the_top_level_holds_the_scripts_and_few_more_and_no_module_is_long():
    top_level = sorted(path.stem for path in PROJECT_ROOT.glob("*.py"))
    assert len(top_level) <= TOP_LEVEL_MODULES, top_level
    long = {name: len(path.read_text().splitlines()) for name, path in project_modules().items()}
    assert {name: lines for name, lines in long.items() if lines > LONGEST_MODULE} == {}


def import_loops() -> list[list[str]]:
    """Chains of the project's modules that import each other round to where they started."""
    modules = project_modules()
    arrows = {
        module: sorted(name for name in imported(path) if name in modules and name != module)
        for module, path in modules.items()
    }
    loops, finished = [], set()

    def walk(module: str, trail: list[str]) -> None:
        if module in trail:
            loops.append(trail[trail.index(module) :] + [module])
            return
        if module in finished:
            return
        for target in arrows[module]:
            walk(target, [*trail, module])
        finished.add(module)

    for module in arrows:
        walk(module, [])
    return loops


def test_no_modules_import_each_other_in_a_loop():
    assert import_loops() == []


@pytest.mark.parametrize(
    "module, name",
    [
        ("recipe.fit", "reader.page"),  # across to a folder beside
        ("data", "recipe.fit"),  # up from the ground floor
        ("reader.page", "server.app"),  # up a floor
        ("predict", "serve"),  # one script importing another
        ("model", "bench"),  # something no floor imports
        ("server.app", "harness.local_server"),
    ],
)
def test_an_arrow_that_runs_up_or_across_is_caught(module, name, monkeypatch):
    path = project_modules()[module]
    source = path.read_text() + f"\nimport {name}\n"
    monkeypatch.setattr(
        Path, "read_text", lambda self: source if self == path else Path.read_bytes(self).decode()
    )
    assert any(arrow.startswith(f"{module} (") and f"imports {name}" in arrow for arrow in upward_arrows())

"""The tree's two halves: the MNIST trainer at the top, the handwriting reader in its package, and
the ground floor both stand on. Arrows run one way: scripts -> reader / training core -> ground."""

import ast
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

GROUND = {"data", "ctc", "model", "outputs", "trained", "quiet_tensorflow"}
TRAINING_CORE = {"training", "settings", "augmentation", "not_digits", "lines", "multiworker"}
TRAINER_SCRIPTS = {"train", "evaluate", "tune", "export"}
READER_SCRIPTS = {"predict", "serve"}
# What each part may import of the project, besides itself.
ALLOWED = {
    "ground": {"ground"},
    "training core": {"ground", "training core"},
    "trainer script": {"ground", "training core"},
    "reader": {"ground", "reader"},
    "reader script": {"ground", "reader"},
}
# The one arrow across the halves: export.py writes the reader's page for static hosts (web/), and
# the page's config takes the reader's constants from their one home, through reader.browser only.
ACROSS = {("export", "reader.browser")}


def part_of(module: str) -> str | None:
    """Which part of the project a module (dotted name) belongs to; None for other libraries."""
    top = module.split(".")[0]
    if top == "reader":
        return "reader"
    for part, members in [
        ("ground", GROUND),
        ("training core", TRAINING_CORE),
        ("trainer script", TRAINER_SCRIPTS),
        ("reader script", READER_SCRIPTS),
    ]:
        if top in members:
            return part
    if top in {"bench", "tests", "conftest", "local_server"} or (PROJECT_ROOT / f"{top}.py").exists():
        return "elsewhere"  # a module of the project's that no part may import (or a new, unplaced one)
    return None


def project_modules() -> dict[str, Path]:
    """Every module of the project but its tests and benchmarks, by dotted name."""
    files = [*PROJECT_ROOT.glob("*.py"), *PROJECT_ROOT.glob("reader/*.py")]
    return {
        ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in files
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


def backward_arrows() -> list[str]:
    arrows = []
    for module, path in project_modules().items():
        part = part_of(module)
        for name in imported(path):
            target = part_of(name)
            if target and target != part and target not in ALLOWED[part] and (module, name) not in ACROSS:
                arrows.append(f"{module} ({part}) imports {name} ({target})")
    return arrows


def test_every_module_of_the_project_belongs_to_one_part():
    unplaced = [module for module in project_modules() if part_of(module) in (None, "elsewhere")]
    assert not unplaced, f"place these in a part of test_structure.py: {unplaced}"


def test_no_import_runs_back_from_the_ground_or_across_the_halves():
    assert backward_arrows() == []


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
    [("training", "reader.page"), ("data", "training"), ("reader.page", "train"), ("model", "bench")],
)
def test_an_arrow_that_runs_back_is_caught(module, name, monkeypatch):
    path = project_modules()[module]
    source = path.read_text() + f"\nimport {name}\n"
    monkeypatch.setattr(
        Path, "read_text", lambda self: source if self == path else Path.read_bytes(self).decode()
    )
    assert any(arrow.startswith(f"{module} (") and f"imports {name}" in arrow for arrow in backward_arrows())

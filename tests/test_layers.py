"""The package's floors: each folder of palsysim/ imports only from the floors below it (and itself), the
import graph has no cycle, and the nodes load no command-line app. Read from the source (every import,
lazy ones inside functions too), so a new import that breaks the order fails here."""
import ast
import os
import subprocess
import sys

from palsysim.base.paths import REPO

# Floor of each part, lowest first (the order the README draws); a module may import its own floor and those below.
FLOORS = {"base": 0, "face": 1, "controlnet": 2, "condition": 3, "identity": 4, "measure": 5, "comfy": 6}
APPS = 7  # cli, runner, demo, bench/, experiment/, study/, models/


def module_name(path):
    parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path):
    """The project modules a source file imports, as absolute dotted names (palsysim.x.y, nodes.x, ...)."""
    name = module_name(path)
    package = name.split(".") if path.endswith("__init__.py") else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports the module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}".replace(".", os.sep) in SOURCES else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in ("palsysim", "nodes", "training")}


def floor(module):
    parts = module.split(".")
    return FLOORS.get(parts[1], APPS) if parts[0] == "palsysim" and len(parts) > 1 else APPS


def sources(*folders):
    for folder in folders:
        for root, _, names in os.walk(os.path.join(REPO, folder)):
            yield from (os.path.join(root, n) for n in names if n.endswith(".py"))


SOURCES = {os.path.relpath(p, REPO)[:-3].replace(os.sep + "__init__", "") for p in sources("palsysim", "nodes", "training")}
GRAPH = {module_name(p): project_imports(p) for p in sources("palsysim", "nodes", "training")}


def test_every_floor_imports_only_from_below():
    wrong = [(m, d) for m, deps in GRAPH.items() if m.startswith("palsysim.") for d in deps
             if d.startswith("palsysim") and floor(d) > floor(m)]
    assert not wrong, wrong


def test_the_floors_are_the_layout_the_readme_draws():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    folders = sorted(d for d in os.listdir(os.path.join(REPO, "palsysim"))
                     if os.path.isfile(os.path.join(REPO, "palsysim", d, "__init__.py")))
    assert set(FLOORS) < set(folders)
    assert [f for f in folders if f"palsysim/{f}/" not in readme] == []


def test_the_ground_floor_imports_no_other_part_of_the_project():
    assert {d for m, deps in GRAPH.items() if m.startswith("palsysim.base") for d in deps
            if not d.startswith("palsysim.base")} == set()


def test_nodes_and_training_use_the_core_never_the_apps_or_each_other():
    wrong = [(m, d) for m, deps in GRAPH.items() if not m.startswith("palsysim") for d in deps
             if (d.startswith("palsysim") and floor(d) >= floor("palsysim.comfy"))
             or d.split(".")[0] not in ("palsysim", m.split(".")[0])]
    assert not wrong, wrong


def test_the_import_graph_has_no_cycle():
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(GRAPH.get(m, ())):
            d = d if d in GRAPH else d.rsplit(".", 1)[0]  # `from module import name`
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif d in GRAPH and d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_starting_the_command_line_imports_no_torch():
    """Every `python -m palsysim ...` builds the whole parser; torch (some 2 s of CPU to import) waits for the
    commands that compute with it, or each study, run or landmarks command starts seconds late."""
    code = "import sys; from palsysim.cli import parser; parser(); print(sorted(m for m in sys.modules if m == 'torch'))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr

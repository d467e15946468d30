"""What ComfyUI loads of the pack, and what a published pack ships: the host's own start-up imports
no module of the pack's with subprocess, network or download code, and never the CLI apps."""
import ast
import glob
import importlib.metadata
import json
import os
import re
import subprocess
import sys

import pytest
import requests
from host import PACK_NAME
from real_faces import photo_paths
from requirement_files import requirement_lines
from tiny_models import comfyui_dir

from palsysim.base import extras
from palsysim.base.vocabulary import ITEMS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Module roots whose import means process, socket or HTTP client code. aiohttp.web is the host's own
# server (the pack's route is served by it), so it is not among them.
NETWORK_OR_PROCESS = {"subprocess", "socket", "urllib", "requests", "http", "websocket", "websockets", "pip",
                      "ftplib", "smtplib", "multiprocessing", "asyncio.subprocess", "aiohttp.client"}
CLI_APPS = ("runner", "comfy", "cli", "demo", "bench", "study", "experiment", "measure.evaluate", "models")

# The host's own main.py, run to the point where --quick-test-for-ci exits (after every custom node is
# loaded and registered), then what the interpreter holds.
PROBE = r"""
import json, os, runpy, sys
host, pack, out = sys.argv[1:4]
sys.argv = [os.path.join(host, "main.py"), *sys.argv[4:]]
sys.path.insert(0, host)
os.chdir(host)
import comfy.options
comfy.options.enable_args_parsing()  # as main.py does first: folder_paths reads the arguments
import folder_paths  # another pack (as InstantID's) registered the shared insightface folder first, for its .bin files
folder_paths.folder_names_and_paths["insightface"] = ([os.path.join(folder_paths.models_dir, "insightface")], {".bin"})
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
import nodes
key = os.path.join(host, "custom_nodes", pack).replace(".", "_x_")
own = {n: os.path.realpath(m.__file__) for n, m in list(sys.modules.items())
       if (n == key or n.startswith(key + ".")) and getattr(m, "__file__", None)}
ours = [k for k, c in nodes.NODE_CLASS_MAPPINGS.items() if getattr(c, "RELATIVE_PYTHON_MODULE", "").endswith(pack)]
exts = {k: sorted(folder_paths.folder_names_and_paths[k][1]) for k in ("insightface", "mediapipe")}
json.dump({"own": own, "nodes": ours, "extensions": exts}, open(out, "w"))
"""


def load_in_host(workdir):
    """{"own": {module name: file}, "nodes": [node ids]} after the host started with only this pack."""
    host = comfyui_dir()
    out = os.path.join(workdir, "modules.json")
    for d in ("input", "output", "temp", "user"):
        os.makedirs(workdir / d, exist_ok=True)
    args = ["--cpu", "--quick-test-for-ci", "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME,
            "--input-directory", str(workdir / "input"), "--output-directory", str(workdir / "output"),
            "--temp-directory", str(workdir / "temp"), "--user-directory", str(workdir / "user"),
            "--database-url", "sqlite:///:memory:"]
    r = subprocess.run([sys.executable, "-c", PROBE, host, PACK_NAME, out, *args], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and os.path.isfile(out), r.stdout[-3000:] + r.stderr[-3000:]
    return json.load(open(out))


def imported_modules(path):
    """Every module a file imports, at top level or inside a function (a lazy import still ships), or
    looks up by name (importlib.util.find_spec("x"))."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("find_spec", "import_module")
              and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(node.args[0].value)
    return found


def distribution(requirement):
    return extras.distribution(requirement).lower().replace("_", "-")


def is_network_or_process(module):
    parts = module.split(".")
    return any(".".join(parts[:i]) in NETWORK_OR_PROCESS for i in range(1, len(parts) + 1))


@pytest.fixture(scope="module")
def loaded(module_tmp):
    return load_in_host(module_tmp("host_load"))


def test_the_host_registers_every_node_of_the_pack(loaded):
    assert len(loaded["nodes"]) >= 13 and "PalsyFaceLandmarks" in loaded["nodes"], loaded["nodes"]


def test_the_pack_adds_its_model_file_types_to_a_shared_folder_and_takes_none_away(loaded):
    assert loaded["extensions"] == {"insightface": [".bin", ".onnx"], "mediapipe": [".task"]}, loaded["extensions"]


def test_what_the_host_loads_has_no_process_network_or_download_code(loaded):
    files = sorted(set(loaded["own"].values()))
    assert any(f.endswith(os.path.join("nodes", "landmarks.py")) for f in files), files  # the probe saw the pack
    found = {os.path.relpath(f, REPO): sorted(filter(is_network_or_process, imported_modules(f))) for f in files}
    assert not {f: m for f, m in found.items() if m}, found
    apps = [f for f in map(lambda f: os.path.relpath(f, REPO), files)
            if any(f.startswith(os.path.join("palsysim", *a.split("."))) for a in CLI_APPS)]
    assert not apps, f"the host imported CLI code: {apps}"


# ComfyUI's public surface for a pack: comfy_api's versioned APIs, folder_paths and the documented loader
# functions (imported by name). Anything else of the host's own modules is an internal, used only through
# nodes/comfy_internals.py, whose docstring names each.
PUBLIC_HOST_API = re.compile(r"(comfy_api\.(latest|v\d+_\d+_\d+)|folder_paths)(\..+)?")
DOCUMENTED_LOADERS = {"comfy.controlnet.load_controlnet", "comfy.sd.load_checkpoint_guess_config"}
INTERNALS_ADAPTER = os.path.join("nodes", "comfy_internals.py")


def host_imports(path):
    """What a file imports from the host's own top-level modules (comfy, server, ComfyUI's nodes, ...), at top
    level or in a function: `import a.b` as a.b, `from a.b import c` as a.b.c."""
    roots = {os.path.splitext(name)[0] for name in os.listdir(comfyui_dir())}
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in roots}


def test_only_the_adapter_module_uses_comfyui_internals():
    files = [os.path.join(REPO, "__init__.py"), *glob.glob(os.path.join(REPO, "nodes", "*.py"))]
    internal = {os.path.relpath(f, REPO): sorted(m for m in host_imports(f) if not PUBLIC_HOST_API.fullmatch(m)
                                                 and m not in DOCUMENTED_LOADERS) for f in files}
    adapter = internal.pop(INTERNALS_ADAPTER)
    elsewhere = {f: m for f, m in internal.items() if m}
    assert not elsewhere, f"use these through {INTERNALS_ADAPTER}: {elsewhere}"
    assert adapter, "the check found no internal even in the adapter"
    doc = ast.get_docstring(ast.parse(open(os.path.join(REPO, INTERNALS_ADAPTER), encoding="utf-8").read()))
    assert [m for m in adapter if m not in doc] == [], "the adapter's docstring does not name an internal it uses"


def run_cli_without(module, *argv):
    """python -m palsysim ARGV in an interpreter where `module` cannot be imported (as without its extra)."""
    code = (f"import sys; sys.modules[{module!r}] = None; from palsysim.cli import main; "
            f"sys.exit(main({list(argv)!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module, extra, argv", [
    ("krippendorff", "study", ("study", "results", "no_such_study", "--out", "no_such_out")),
    ("websocket", "run", ("run", "workflows/api/palsy_pf.json", "--server", "http://127.0.0.1:9",
                          "--patients", "no_such_folder", "--out", "no_such_out")),
])
def test_a_command_without_its_extra_names_the_install_line(tmp_path, module, extra, argv):
    r = run_cli_without(module, *argv)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = f"pip install -r {os.path.join(REPO, f'requirements-{extra}.txt')}"
    assert line in r.stderr and f"'{extra}' extra" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(REPO, "no_such_out"))  # refused before any work


def test_requirements_txt_is_what_the_loaded_modules_import(loaded):
    """ComfyUI-Manager installs requirements.txt for the nodes: each line is a distribution that what the
    host loads imports, and each such import comes from a line, from the host's own requirements, or from
    an extra (a command-line path's lazy import, e.g. fidelity's lpips, that says so when missing)."""
    providers = {}  # top-level module -> distributions, from the files each installs (dlib-bin's
    for dist in importlib.metadata.distributions():  # top_level.txt omits its dlib package)
        for f in dist.files or ():
            providers.setdefault(f.parts[0].split(".")[0], set()).add(dist.metadata["Name"])
    imported = {m.split(".")[0] for f in set(loaded["own"].values()) for m in imported_modules(f)}
    needed = {distribution(d) for m in imported - set(sys.stdlib_module_names) for d in providers.get(m, ())}
    ours = {distribution(line) for line in requirement_lines(os.path.join(REPO, "requirements.txt"))}
    host = {distribution(line) for line in requirement_lines(os.path.join(comfyui_dir(), "requirements.txt"))}
    assert ours - needed == set(), "requirements.txt installs what the nodes never import"
    optional = {distribution(line) for f in glob.glob(os.path.join(REPO, "requirements-*.txt")) for line in
                requirement_lines(f) if not f.endswith("-dev.txt")}
    assert needed - ours - host - optional == set(), "the nodes import what requirements.txt does not install"


def published_files():
    """The tracked files a published pack keeps: .comfyignore read with git's own ignore rules."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    ignored = subprocess.run(["git", "-c", "core.excludesFile=.comfyignore", "check-ignore", "--no-index", "--stdin"],
                             cwd=REPO, input=tracked, capture_output=True, text=True).stdout
    return set(tracked.splitlines()) - set(ignored.splitlines())


def test_a_published_pack_leaves_out_tests_ci_scripts_and_locks():
    kept = published_files()
    left_in = [f for f in kept if f.startswith(("tests/", ".ci/", "scripts/", "constraints"))
               or f.endswith(".lock") or f in ("requirements-dev.txt", "Makefile")]
    assert not left_in, left_in
    assert {"__init__.py", "nodes/__init__.py", "palsysim/__init__.py", "requirements.txt", "pyproject.toml",
            "LICENSE", "README.md", "install.py"} <= kept  # install.py: what the Manager runs after requirements
    assert any(f.startswith("example_workflows/") for f in kept) and any(f.startswith("workflows/api/") for f in kept)
    assert {f"requirements-{e}.txt" for e in ("run", "study", "evaluate", "train")} <= kept  # the extras' lines


def our_nodes(host):
    return {k: v for k, v in host.object_info().items() if v.get("python_module") == f"custom_nodes.{PACK_NAME}"}


def test_every_node_has_help_pages_in_english_and_japanese(host):
    nodes = our_nodes(host)
    assert "PalsyPrivacyGate" in nodes
    for node, spec in nodes.items():
        names = [*spec["input"].get("required", {}), *spec["input"].get("optional", {}), *spec["output_name"]]
        for lang, heads in (("en", ("## Inputs", "## Outputs", "## Example")), ("ja", ("## 入力", "## 出力", "## 使用例"))):
            # Where frontend 1.32.9 fetches a custom node's help (getNodeHelpBaseUrl: /extensions/<pack>/docs/).
            r = requests.get(f"{host.url}/extensions/{PACK_NAME}/docs/{node}/{lang}.md", timeout=30)
            assert r.status_code == 200, (node, lang)
            page = r.content.decode("utf-8")
            assert all(h in page for h in heads), (node, lang)
            missing = [n for n in names if f"**{n}**" not in page]
            assert not missing, f"{node} {lang}.md does not describe {missing}"


def test_every_node_has_a_japanese_name_and_description(host):
    ja = host.get("/i18n")["ja"]["nodeDefs"]
    for node, spec in our_nodes(host).items():
        assert node in ja, node
        entry = ja[node]
        assert not entry["display_name"].isascii() and not entry["description"].isascii(), node
        assert set(entry["inputs"]) == {*spec["input"].get("required", {}), *spec["input"].get("optional", {})}, node
        assert len(entry.get("outputs", {})) == len(spec["output_name"]), node


def yanagihara_items(host, photo, **language):
    inputs = {item: ["1", 0] for item in ITEMS}
    r = host.run({"1": {"class_type": "LoadImage", "inputs": {"image": photo}},
                  "2": {"class_type": "PalsyYanagiharaBatch", "inputs": {**inputs, **language}},
                  "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}}})
    assert r.ok, r.error
    return r.outputs["3"]["text"][0].splitlines()


def test_the_grid_names_the_items_in_english_by_default_and_in_japanese(host):
    photo = host.upload_image(photo_paths()["astronaut"])
    assert yanagihara_items(host, photo) == list(ITEMS) == yanagihara_items(host, photo, language="en")
    ja = yanagihara_items(host, photo, language="ja")
    assert ja[0] == "安静時" and ja[-1] == "口をへの字にまげる" and len(set(ja)) == len(ITEMS)
    assert all(not name.isascii() for name in ja)

"""What ComfyUI loads of the pack, and what a published pack ships: the host's own start-up imports
no module of the pack's with subprocess, network or download code, and never the CLI apps."""
import ast
import json
import os
import subprocess
import sys

import pytest

from host import PACK_NAME
from tiny_models import comfyui_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Module roots whose import means process, socket or HTTP client code. aiohttp.web is the host's own
# server (the pack's route is served by it), so it is not among them.
NETWORK_OR_PROCESS = {"subprocess", "socket", "urllib", "requests", "http", "websocket", "websockets", "pip",
                      "ftplib", "smtplib", "multiprocessing", "asyncio.subprocess", "aiohttp.client"}
CLI_APPS = ("runner", "cli", "demo", "bench", "study", "experiment", "evaluate", "models.fetch", "models.command")

# The host's own main.py, run to the point where --quick-test-for-ci exits (after every custom node is
# loaded and registered), then what the interpreter holds.
PROBE = r"""
import json, os, runpy, sys
host, pack, out = sys.argv[1:4]
sys.argv = [os.path.join(host, "main.py"), *sys.argv[4:]]
sys.path.insert(0, host)
os.chdir(host)
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
import nodes
key = os.path.join(host, "custom_nodes", pack).replace(".", "_x_")
own = {n: os.path.realpath(m.__file__) for n, m in list(sys.modules.items())
       if (n == key or n.startswith(key + ".")) and getattr(m, "__file__", None)}
ours = [k for k, c in nodes.NODE_CLASS_MAPPINGS.items() if getattr(c, "RELATIVE_PYTHON_MODULE", "").endswith(pack)]
json.dump({"own": own, "nodes": ours}, open(out, "w"))
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
    """Every module a file imports, at top level or inside a function (a lazy import still ships)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def is_network_or_process(module):
    parts = module.split(".")
    return any(".".join(parts[:i]) in NETWORK_OR_PROCESS for i in range(1, len(parts) + 1))


@pytest.fixture(scope="module")
def loaded(module_tmp):
    return load_in_host(module_tmp("host_load"))


def test_the_host_registers_every_node_of_the_pack(loaded):
    assert len(loaded["nodes"]) >= 13 and "PalsyFaceLandmarks" in loaded["nodes"], loaded["nodes"]


def test_what_the_host_loads_has_no_process_network_or_download_code(loaded):
    files = sorted(set(loaded["own"].values()))
    assert any(f.endswith(os.path.join("nodes", "landmarks.py")) for f in files), files  # the probe saw the pack
    found = {os.path.relpath(f, REPO): sorted(filter(is_network_or_process, imported_modules(f))) for f in files}
    assert not {f: m for f, m in found.items() if m}, found
    apps = [f for f in map(lambda f: os.path.relpath(f, REPO), files)
            if any(f.startswith(os.path.join("palsysim", *a.split("."))) for a in CLI_APPS)]
    assert not apps, f"the host imported CLI code: {apps}"

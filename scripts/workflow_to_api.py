"""Write the API-format twin of each UI workflow: example_workflows/<title>.json -> workflows/api/<name>.json
(the shipped titles and names: build_workflows.TITLES; any other file keeps its name, in an api/ folder
beside it).

    python scripts/workflow_to_api.py --server http://127.0.0.1:8188          # all of example_workflows/*.json
    python scripts/workflow_to_api.py --embedded                              # starts the embedded host
    python scripts/workflow_to_api.py --server URL --check                    # exit 1 if a twin is stale

Widget values are mapped to input names with the server's /object_info, so the server must have
this pack (and the core nodes) loaded. Output is deterministic: a twin changes only when its UI
file or a node's inputs do.
"""
import argparse
import glob
import os
import sys

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from palsysim.base.errors import InputError  # noqa: E402
from palsysim.base.paths import API_DIR, TEMPLATES_DIR  # noqa: E402
from palsysim.base.workflows import TITLES  # noqa: E402
from palsysim.comfy.workflow import dumps, load_json, to_api  # noqa: E402


def twins(object_info, files):
    """{api path: API JSON text} for the UI files."""
    out = {}
    for path in files:
        try:
            api = to_api(load_json(path), object_info)
        except InputError as e:
            raise InputError(f"{os.path.relpath(path, REPO)}: {e}") from None
        title = os.path.basename(path)[:-len(".json")]
        name = next((n for n, t in TITLES.items() if t == title), title)
        folder = os.path.dirname(os.path.abspath(path))
        # Twins stay out of the templates folder: the template browser would list them too.
        folder = API_DIR if folder == TEMPLATES_DIR else os.path.join(folder, "api")
        out[os.path.join(folder, name + ".json")] = dumps(api)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="URL of a running ComfyUI with this pack")
    where.add_argument("--embedded", action="store_true", help="start the embedded host for the conversion")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if any twin differs")
    ap.add_argument("files", nargs="*", help="UI workflows (default: example_workflows/*.json)")
    args = ap.parse_args(argv)
    files = args.files or sorted(glob.glob(os.path.join(TEMPLATES_DIR, "*.json")))
    if args.embedded:
        from palsysim.comfy.host import EmbeddedHost
        with EmbeddedHost() as host:
            info = requests.get(host.url + "/object_info", timeout=60).json()
    else:
        info = requests.get(args.server.rstrip("/") + "/object_info", timeout=60).json()
    try:
        result = twins(info, files)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [p for p, text in result.items() if not os.path.isfile(p) or open(p, encoding="utf-8").read() != text]
    if args.check:
        for p in stale:
            print(f"stale: {os.path.relpath(p, REPO)} (run scripts/workflow_to_api.py)", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w", encoding="utf-8") as f:
            f.write(result[p])
        print(f"wrote {os.path.relpath(p, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

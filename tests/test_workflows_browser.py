"""The shipped workflows in the real ComfyUI frontend, driven as a user would in headless Chromium.

The frontend is the one the environment's lock pins (requirements.lock: 1.32.9, the host ComfyUI
0.3.75's own; requirements-current.lock: the newest the host serves); the page must report that version,
and the test writes it to out/test-artifacts/frontend_version.txt.

For each workflow, with the photos and model files it names on the host: open it from the Templates
dialog by its title; no missing or red node (newer frontends also mark a node whose file the host
lacks), no two nodes overlapping, no link drawn over a group's title; the frontend draws the nodes' text
at the saved view and at fit view (the frontend drops text below 8 px, LiteGraph.Canvas.MinFontSizeForLOD),
and the same inside each subgraph opened (the grid's photos); the prompt the frontend would send
(app.graphToPrompt: a subgraph's nodes as "<outer>:<inner>") equals the API twin; queued at 2 steps with the
tiny models it finishes with the privacy gate holding back the noise, each photo where it belongs, and the
previews it shows still overlap nothing. Screenshots (saved view, fit view, after the run; opened, where the
frontend opens a template at another view) go to out/test-artifacts/.

Needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver) and selenium.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from canvas_geometry import GROUPS_JS, NODES_JS, crossing_group_edges, overlapping, wires_over_titles
from host import TINY_CHECKPOINT, TINY_CONTROLNET
from real_faces import photo_paths, write_expression_video
from runner_helpers import REPO, api
from shipped_workflows import NAMES, TITLES, readme_templates

from palsysim.base.workflows import template_path
from palsysim.comfy.workflow import FRONTEND_WIDGETS

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = os.path.join(REPO, "out", "test-artifacts")
ARCFACE = "browser_tiny/arcface.onnx"
# The project's environments (scripts/setup.sh) and the lock each installs.
LOCKS = {".venv": "requirements.lock", ".venv-current": "requirements-current.lock"}
FRONTEND = "comfyui-frontend-package"
# The model files the templates name, by the loader's input, and the host's folder for them.
MODEL_INPUTS = {("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
                ("PalsyTimestepWindowControlNetLoader", "control_net_name"): "controlnet",
                ("PalsyPrivacyGate", "model_name"): "insightface"}
pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium "
                                       "chromium-driver")


@pytest.fixture(scope="module")
def page(host):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1600,1000",
              "--disable-dev-shm-usage"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_script_timeout(120)
    try:
        driver.get(host.url)
        wait(driver, "return !!(window.app && app.graph && app.extensionManager)", 120)
        os.makedirs(ARTIFACTS, exist_ok=True)
        yield driver
    finally:
        driver.quit()


def expected_frontend():
    """(version, where it comes from): the frontend the host should serve. The host runs in $COMFYUI_PYTHON or
    this interpreter (host.start_host); in one of the project's venvs, the version that venv's lock pins, else
    the version installed there."""
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    probe = ("import sys, importlib.metadata as m; print(sys.prefix); "
             f"print(m.version({FRONTEND!r}))")
    prefix, installed = subprocess.run([python, "-c", probe], check=True, capture_output=True,
                                       text=True).stdout.split()
    for venv, lock in LOCKS.items():
        if os.path.realpath(prefix) == os.path.realpath(os.path.join(REPO, venv)):
            pins = [line.split("==", 1)[1].strip() for line in open(os.path.join(REPO, lock), encoding="utf-8")
                    if "==" in line and re.sub(r"[-_.]+", "-", line.split("==")[0].strip().lower()) == FRONTEND]
            assert len(pins) == 1, f"{lock} pins {FRONTEND} {len(pins)} times"
            return pins[0], lock
    return installed, f"installed in {prefix}"


def test_the_page_runs_the_frontend_the_environment_pins(page):
    """A silent fallback (another frontend on the path, a --front-end-version download, a set-up that kept the
    host's own pin) fails here, not as a puzzling difference further on."""
    served = page.execute_script("return window.__COMFYUI_FRONTEND_VERSION__")
    want, source = expected_frontend()
    with open(os.path.join(ARTIFACTS, "frontend_version.txt"), "w", encoding="utf-8") as f:
        f.write(f"{served}\n")
    print(f"frontend {served} (expected {want}: {source})")
    assert served == want, f"the page runs frontend {served}, {source} says {want}"


def template_nodes(name):
    """The shipped template's nodes, read from its API twin: {(class_type, input): [value, ...]}."""
    out = {}
    for node in json.load(open(api(name), encoding="utf-8")).values():
        for key, value in node["inputs"].items():
            if isinstance(value, str):
                out.setdefault((node["class_type"], key), []).append(value)
    return out


@pytest.fixture(scope="module")
def named_files(host, clip):
    """The photos and model files the templates name (patient.png, v1-5-pruned-emaonly.safetensors, ...) on
    the host, as a user has them: newer frontends mark a node red whose file the host does not list. The
    models are links to the tiny ones (nothing loads them: the run sets the tiny names); all go afterwards."""
    tiny = {"checkpoints": host.model_path("checkpoints", TINY_CHECKPOINT),
            "controlnet": host.model_path("controlnet", TINY_CONTROLNET)}
    made = []
    for name in NAMES:
        nodes = template_nodes(name)
        for photo in nodes.get(("LoadImage", "image"), []):
            if not os.path.exists(os.path.join(host.input_dir, photo)):
                made.append(os.path.join(host.input_dir, host.upload_image(photo_paths()["grace_hopper"], name=photo)))
        for video in nodes.get(("LoadVideo", "file"), []):
            if not os.path.exists(os.path.join(host.input_dir, video)):
                made.append(shutil.copyfile(os.path.join(host.input_dir, clip), os.path.join(host.input_dir, video)))
        for key, folder in MODEL_INPUTS.items():
            for model in nodes.get(key, []):
                path = host.model_path(folder, model)
                if os.path.exists(path):
                    continue
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if folder in tiny:
                    os.link(tiny[folder], path)
                else:
                    from tiny_arcface import write_tiny_arcface
                    write_tiny_arcface(path)
                made.append(path)
    host.refresh_models()
    yield
    for path in made:
        os.unlink(path)
    host.refresh_models()


def wait(driver, script, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"the page never satisfied: {script}")


def open_template(driver, title, url):
    """A fresh page (no tabs or dialogs left by an earlier test), then the template from the Templates dialog."""
    from selenium.webdriver.common.by import By
    driver.get(url)
    wait(driver, "return !!(window.app && app.graph && app.extensionManager)", 120)
    driver.execute_script("app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    box = wait(driver, "return document.querySelector(\"input[placeholder^='Search']\")")
    box.clear()
    box.send_keys(title)
    from selenium.common.exceptions import StaleElementReferenceException
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # the cards re-render while the search filters them
            cards = [e for e in driver.find_elements(By.TAG_NAME, "h3") if e.text.strip() == title]
            if cards:
                cards[0].click()
                break
        except StaleElementReferenceException:
            pass
        time.sleep(0.25)
    else:
        raise AssertionError(f"no template card titled {title!r} in the Templates dialog")
    wait(driver, "return app.graph._nodes.length > 0 && "
                 "app.graph._nodes.some(n => n.type.startsWith('PalsySaveAnonymized')) && "
                 "!document.querySelector('.p-dialog-mask')", 60)
    time.sleep(1)  # let the canvas draw


# Each combo, number and text widget whose label and value do not both fit its node: the frontend then cuts
# the label ("co… control_sd15_canny.pth"), then the value. Its test (frontends 1.32.9 in Arial and 1.58.1 in
# Inter, BaseWidget.drawTruncatingText): label + 5 + value <= width - 85 (combo, number) or width - 60 (text).
CUT_WIDGETS_JS = """
const ctx = app.canvas.ctx, font = ctx.font, out = [];
ctx.font = app.canvas.inner_text_font;
const chrome = {ComboWidget: 85, NumberWidget: 85, TextWidget: 60};
for (const n of app.canvas.graph._nodes) for (const w of n.widgets || []) {
    const kind = w.constructor && w.constructor.name;
    if (!(kind in chrome) || w.computedDisabled) continue;
    const label = ctx.measureText(w.displayName ?? w.label ?? w.name).width;
    const value = ctx.measureText(String(w._displayValue ?? w.value)).width;
    if (label + 5 + value > n.size[0] - chrome[kind]) out.push([n.title, w.name]);
}
ctx.font = font;
return out;
"""
def same_numbers(x):
    """JSON value with every number as a float, so 1 and 1.0 compare equal (the frontend sends 1)."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, list):
        return [same_numbers(v) for v in x]
    return {k: same_numbers(v) for k, v in x.items()}


# What newer frontends add to a node's prompt beside its inputs, which the server ignores: Load Video's
# preview (1.58.1 sends "video-preview": "", 1.32.9 nothing).
NEWER_FRONTEND_WIDGETS = {"LoadVideo": ("video-preview",)}


def as_sent(twin, prompt):
    """(twin, prompt) each less the frontend-added widgets the other lacks: FRONTEND_WIDGETS (Preview as
    Text's text box: 1.32.9 sends it, newer ones do not) and NEWER_FRONTEND_WIDGETS (the reverse)."""
    twin, prompt = json.loads(json.dumps(twin)), json.loads(json.dumps(prompt))
    for node_id, node in twin.items():
        sent = prompt.get(node_id, {}).get("inputs", {})
        for widget in FRONTEND_WIDGETS.get(node["class_type"], ()):
            if widget not in sent:
                node["inputs"].pop(widget, None)
        for widget in NEWER_FRONTEND_WIDGETS.get(node["class_type"], ()):
            if widget not in node["inputs"]:
                sent.pop(widget, None)
    return twin, prompt


def screenshot(driver, name):
    path = os.path.join(ARTIFACTS, name + ".png")
    driver.save_screenshot(path)
    return path


def set_widgets(driver, changes):
    """changes: [(node type, widget name, value)] for every node of that type, inside subgraphs too."""
    return driver.execute_script("""
        let n = 0;
        const all = app.graph._nodes.concat(...[...(app.graph.subgraphs?.values() ?? [])].map(s => s._nodes));
        for (const [type, name, value] of arguments[0])
            for (const node of all.filter(x => x.type === type)) {
                const w = node.widgets.find(w => w.name === name);
                w.value = value; if (w.callback) w.callback(value); n++;
            }
        app.graph.setDirtyCanvas(true, true);
        return n;""", changes)


def text_is_drawn(driver):
    """The canvas zoom, and whether the frontend draws node text there (not its low-detail boxes)."""
    return driver.execute_script("return [app.canvas.ds.scale, !app.canvas.low_quality]")


def saved_view(driver, name, show=False):
    """Whether the canvas shows the view the template saved (extra.ds); show=True: show it, as the frontend
    restores it when it opens the file (from the Workflows sidebar, a drop)."""
    ds = json.load(open(template_path(name), encoding="utf-8"))["extra"]["ds"]
    return driver.execute_script("""
        const ds = app.canvas.ds, [scale, [x, y], show] = arguments;
        if (show) { ds.scale = scale; ds.offset[0] = x; ds.offset[1] = y; app.canvas.setDirty(true, true); }
        return Math.abs(ds.scale - scale) < 1e-6 && Math.abs(ds.offset[0] - x) < 1e-3
            && Math.abs(ds.offset[1] - y) < 1e-3;""", ds["scale"], ds["offset"], show)


@pytest.mark.parametrize("name", NAMES)
def test_workflow_in_the_frontend(host, page, named_files, name):
    open_template(page, TITLES[name], host.url)
    # Frontend 1.32.9 opens a template at its saved view; newer ones at their own fit of the window
    # (app.ts: "Always fit view for templates"), where the grid is too big to draw text.
    if not saved_view(page, name):
        scale, drawn = text_is_drawn(page)
        print(f"{name}: the Templates dialog opened it at {scale:.3f}, text drawn: {drawn}")
        screenshot(page, f"{name}_opened")
        assert drawn, f"it opens at {scale:.2f}, too small to draw text"
        assert saved_view(page, name, show=True)
        time.sleep(1)
    screenshot(page, f"{name}_saved_view")
    assert text_is_drawn(page)[1], "the saved view is too far out to draw text"
    nodes = page.execute_script(NODES_JS)
    assert [n["type"] for n in nodes if not n["known"]] == [], "missing node types"
    assert [n["title"] for n in nodes if n["errors"]] == [], "nodes marked red"
    assert overlapping(nodes) == []
    crossing = crossing_group_edges(nodes, page.execute_script(GROUPS_JS))
    assert crossing == [], f"nodes over a group's edge: {crossing}"
    wires = wires_over_titles(page)
    assert wires == [], f"links drawn over a group's title: {wires}"
    assert page.execute_script(CUT_WIDGETS_JS) == [], "widgets whose label or value the frontend cuts"
    prompt = page.execute_async_script("app.graphToPrompt().then(p => arguments[0](p.output))")
    twin = json.load(open(api(name), encoding="utf-8"))
    twin, prompt = as_sent(twin, prompt)
    assert same_numbers(prompt) == same_numbers(twin)
    page.execute_script("app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    time.sleep(1)
    screenshot(page, f"{name}_fit_view")
    scale, drawn = text_is_drawn(page)
    print(f"{name}: fit view at {scale:.3f}, text drawn: {drawn}")
    assert drawn, f"fit view at {scale:.2f} is too small to draw text"
    assert abs(readme_templates()[name][1] - 100 * scale) < 1, f"README's Fit View for {name} is not {scale:.1%}"
    # Inside each subgraph (the grid's photos), as the user sees it opened: the same checks.
    ui = json.load(open(template_path(name), encoding="utf-8"))
    subgraphs = {s["id"] for s in ui.get("definitions", {}).get("subgraphs", [])}
    for node in [n for n in ui["nodes"] if n["type"] in subgraphs]:
        page.execute_script("const n = app.graph.getNodeById(arguments[0]); app.canvas.openSubgraph(n.subgraph, n);"
                            "app.extensionManager.command.execute('Comfy.Canvas.FitView')", node["id"])
        time.sleep(1)
        screenshot(page, f"{name}_inside_{node['id']}")
        inner = page.execute_script(NODES_JS)
        assert len(inner) > 1 and all(n["known"] for n in inner) and overlapping(inner) == []
        assert crossing_group_edges(inner, page.execute_script(GROUPS_JS)) == [] and wires_over_titles(page) == []
        assert page.execute_script(CUT_WIDGETS_JS) == [] and text_is_drawn(page)[1]


@pytest.fixture(scope="module")
def tiny_arcface(host):
    from tiny_arcface import write_tiny_arcface
    path = host.model_path("insightface", ARCFACE)
    if not os.path.exists(path):
        write_tiny_arcface(path)
        host.refresh_models()
    return ARCFACE


@pytest.fixture(scope="module")
def clip(host, tmp_path_factory):
    """The video workflow's input: a short real-face expression video in the server's input folder."""
    return host.upload_image(write_expression_video(tmp_path_factory.mktemp("clip") / "grin.mp4", frames=6))


@pytest.mark.parametrize("name", NAMES)
def test_workflow_runs_from_the_frontend(host, page, tiny_arcface, clip, named_files, name):
    # open_template loads a fresh page, so its model lists already hold the tiny ArcFace. (Not
    # app.refreshComboInNodes: frontend 1.32.9 sets every combo Primitive to 'C' there, measured on a
    # Primitive made by hand in the UI too.)
    open_template(page, TITLES[name], host.url)
    photo = host.upload_image(photo_paths()["grace_hopper"])
    donor = host.upload_image(photo_paths()["astronaut"])
    set_widgets(page, [("CheckpointLoaderSimple", "ckpt_name", TINY_CHECKPOINT),
                       ("PalsyTimestepWindowControlNetLoader", "control_net_name", TINY_CONTROLNET),
                       ("EmptyLatentImage", "width", 64), ("EmptyLatentImage", "height", 64),
                       ("KSampler", "steps", 2), ("PalsyPrivacyGate", "model_name", tiny_arcface),
                       ("LoadImage", "image", photo), ("LoadVideo", "file", clip),
                       ("PalsyVideoConditions", "size", 64)])  # the video's latent takes the conditions' size
    page.execute_script("for (const n of app.graph._nodes) if (n.type === 'LoadImage' && n.title === 'donor') {"
                        "const w = n.widgets.find(w => w.name === 'image'); w.value = arguments[0]; "
                        "if (w.callback) w.callback(arguments[0]); }", donor)  # the callback shows the photo
    before = set(host.get("/history"))
    page.execute_async_script("app.queuePrompt(0, 1).then(() => arguments[0](true))")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        new = {k: v for k, v in host.get("/history").items() if k not in before}
        if new:
            break
        refused = page.execute_script("return app.lastNodeErrors && Object.keys(app.lastNodeErrors).length "
                                      "? JSON.stringify(app.lastNodeErrors) : null")
        assert not refused, f"the server refused the queued workflow: {refused[:2000]}"
        time.sleep(0.5)
    else:
        raise TimeoutError("the queued workflow did not finish")
    (entry,) = new.values()
    status = entry["status"]
    errors = [m[1].get("exception_message") for m in status["messages"] if m[0] == "execution_error"]
    assert status["status_str"] == "success", errors
    texts = [t for o in entry["outputs"].values() for t in o.get("text", [])]
    assert texts and all("held back" in t for t in texts if "similarity" in t or "held back" in t), texts
    # Each photo went where the user put it: the donor's node sent the donor, every other the patient.
    sent = {n["_meta"]["title"]: n["inputs"]["image"] for n in entry["prompt"][2].values()
            if n["class_type"] == "LoadImage"}
    assert sent and all(v == (donor if t == "donor" else photo) for t, v in sent.items()), sent
    time.sleep(2)  # the previews and reports arrive over the websocket and resize their nodes
    shown = page.execute_script("return app.graph._nodes.filter(n => n.title === 'gate report')"
                                ".map(n => n.widgets.map(w => String(w.value)).join(' '))")
    assert shown and all("held back" in t for t in shown), f"the graph does not show the gate's report: {shown}"
    assert overlapping(page.execute_script(NODES_JS)) == [], "a node grew over another after the run"
    assert crossing_group_edges(page.execute_script(NODES_JS), page.execute_script(GROUPS_JS)) == [], \
        "a node grew over its group's edge after the run"
    page.execute_script("app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    time.sleep(1)
    screenshot(page, f"{name}_after_run")

"""Fuzzing the parsers of what users hand in (issue 8, item 5), with hypothesis.

- safetensors metadata and garbage model files (palsysim.controlnet.file: read_window, resolve_window,
  load_controlnet_weights);
- the headless runner's `--set NODE.INPUT=VALUE` overrides (palsysim.comfy.workflow.parse_override and
  set_input, which palsysim.comfy.plan.prepare_graph applies to every --set);
- dataset folders for training (training.dataset: find_photos, load_dataset) with arbitrary folder
  and file names and empty files;
- the landmark detector's settings (palsysim.face.landmarks.detector): any float for min_confidence, NaN
  and infinities included, keeps its cache bounded, with keys that equal themselves.

The only exception allowed out is the project's clear one, InputError (DatasetError is one); every
success is checked for sense. Deterministic (derandomize, no example database), no network, and
small example counts so the file runs in well under a minute on 2 CPU cores.
"""
import json
import math
import os
import struct
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from palsysim.base.errors import InputError
from palsysim.comfy import workflow as wf
from palsysim.controlnet.file import PREFIX, load_controlnet_weights, read_window, resolve_window
from palsysim.face import landmarks as lm
from training.dataset import EXPRESSIONS, DatasetError, find_photos, load_dataset

FUZZ = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# --- safetensors metadata and model files --------------------------------------------------------

WINDOW_KEYS = [PREFIX + k for k in ("t_lo", "t_hi", "schedule", "mode", "format", "base_model")]
numberish = st.one_of(st.integers(-5, 1005).map(str), st.sampled_from(["", " 500", "5e2", "700.0", "nan", "0x1f4",
                                                                      "١٢٣", "1_000", "-0", "+699", "9" * 30]),
                      st.text(max_size=8))
metadata = st.dictionaries(st.one_of(st.sampled_from(WINDOW_KEYS), st.text(max_size=20)),
                           st.one_of(numberish, st.sampled_from(["sd15-scaled-linear-1000", "other"]),
                                     st.text(max_size=30)), max_size=8)
timestep = st.integers(-1, 999)


def _check_resolved(path, t_lo, t_hi):
    try:
        lo, hi, meta = resolve_window(path, t_lo, t_hi)
    except InputError as e:
        assert os.path.basename(path) in str(e)  # the message names the file
        return
    assert 0 <= lo <= hi <= 999 and isinstance(lo, int) and isinstance(hi, int)
    assert lo == t_lo if t_lo >= 0 else lo == meta["t_lo"]
    assert hi == t_hi if t_hi >= 0 else hi == meta["t_hi"]


@FUZZ
@given(meta=metadata, t_lo=timestep, t_hi=timestep)
def test_arbitrary_safetensors_metadata(meta, t_lo, t_hi):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "net.safetensors")
        save_file({"control_model.x": torch.zeros(2)}, path, metadata=meta)
        try:
            window = read_window(path)
        except InputError as e:
            assert "net.safetensors" in str(e)
        else:
            if window is None:
                assert PREFIX + "t_lo" not in meta or PREFIX + "t_hi" not in meta
            else:
                assert 0 <= window["t_lo"] <= window["t_hi"] <= 999
        _check_resolved(path, t_lo, t_hi)


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                    st.text(max_size=10)),
                          lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                          max_leaves=12)


@st.composite
def safetensors_like(draw):
    """Bytes a safetensors parser gets past its first check on: a length, then a JSON header of any
    shape (tensor entries with odd dtypes, shapes and offsets, __metadata__ of any type), then data."""
    header = draw(st.dictionaries(st.one_of(st.just("__metadata__"), st.text(max_size=6)), st.one_of(
        json_value,
        st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "F16", "I64", "BOOL", "X9"]),
                               "shape": st.lists(st.integers(-2, 4), max_size=3),
                               "data_offsets": st.lists(st.integers(-4, 64), min_size=0, max_size=3)})),
        max_size=4))
    text = json.dumps(header).encode()
    claimed = draw(st.one_of(st.just(len(text)), st.integers(0, 2 ** 64 - 1)))
    return struct.pack("<Q", claimed) + text + draw(st.binary(max_size=64))


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), safetensors_like()), ext=st.sampled_from(
    [".safetensors", ".sft", ".ckpt", ".pth", ".pt"]), t_lo=timestep, t_hi=timestep)
def test_garbage_model_files(data, ext, t_lo, t_hi):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model" + ext)
        with open(path, "wb") as f:
            f.write(data)
        _check_resolved(path, t_lo, t_hi)
        try:
            sd = load_controlnet_weights(path)
        except InputError as e:
            assert "model" + ext in str(e)
        else:  # only a file that really holds ControlNet-named tensors gets through
            assert sd and all(isinstance(v, torch.Tensor) for v in sd.values())


# --- --set NODE.INPUT=VALUE ----------------------------------------------------------------------

def _graph():
    return {
        "3": {"class_type": "KSampler", "_meta": {"title": "KSampler"},
              "inputs": {"seed": 7, "steps": 20, "cfg": 7.5, "sampler_name": "euler", "model": ["4", 0],
                         "denoise": 1.0}},
        "4": {"class_type": "CheckpointLoaderSimple", "_meta": {"title": "base model"},
              "inputs": {"ckpt_name": "v1-5.safetensors"}},
        "7": {"class_type": "PalsyPrivacyGate", "_meta": {"title": "privacy gate"},
              "inputs": {"threshold": 0.28, "image": ["3", 0], "model_name": "a.onnx"}},
        "8": {"class_type": "PalsySaveAnonymized", "inputs": {"filename_prefix": "x", "images": ["7", 0],
                                                              "enabled": True}},
    }


refs = st.one_of(st.sampled_from(["3", "4", "7", "8", "KSampler", "base model", "privacy gate",
                                  "PalsySaveAnonymized", "CheckpointLoaderSimple"]), st.text(max_size=12))
names = st.one_of(st.sampled_from(["seed", "steps", "cfg", "sampler_name", "model", "denoise", "ckpt_name",
                                   "threshold", "image", "filename_prefix", "enabled"]), st.text(max_size=8))
values = st.one_of(st.sampled_from(["1", "-3", "0.5", "1e3", "nan", "inf", "-inf", "true", "no", "", "=", "1_0",
                                    "١٢", " 4 ", "9" * 5000]), st.text(max_size=20))


@FUZZ
@given(text=st.text(max_size=40))
def test_parse_override_of_any_text(text):
    try:
        node, name, value = wf.parse_override(text)
    except InputError as e:
        assert "NODE.INPUT=VALUE" in str(e)
    else:
        assert node and name and f"{node}.{name}={value}" == text


@FUZZ
@given(ref=refs, name=names, value=values)
@example(ref="KSampler", name="cfg", value="nan")
@example(ref="privacy gate", name="threshold", value="-inf")
def test_set_input_of_any_override(ref, name, value):
    graph = _graph()
    before = json.loads(json.dumps(graph))
    try:
        ids = wf.set_input(graph, *wf.parse_override(f"{ref}.{name}={value}"))
    except InputError:
        # refused whole: the graph may be changed only for nodes before the one refused; never a link
        for nid, node in graph.items():
            for k, v in node["inputs"].items():
                if isinstance(before[nid]["inputs"][k], list):
                    assert v == before[nid]["inputs"][k]
        return
    for nid in ids:
        old, new = before[nid]["inputs"][name], graph[nid]["inputs"][name]
        assert type(new) is type(old), (old, new)  # an int stays an int, a bool a bool, ...
        if isinstance(new, float):
            assert math.isfinite(new), f"--set {ref}.{name}={value!r} gave {new}"


# --- dataset folders -----------------------------------------------------------------------------

def _fs_name(text):
    return text not in (".", "..") and "/" not in text and "\0" not in text and len(text.encode()) <= 80


fs_names = st.text(min_size=1, max_size=12).filter(_fs_name)
files = st.lists(st.tuples(st.one_of(fs_names, st.sampled_from([".hidden", "Thumbs.db", "a", "x.PNG"])),
                           st.sampled_from(["", ".png", ".jpg", ".JPEG", ".txt", ".png.partial"]),
                           st.binary(max_size=16)), max_size=4)
expressions = st.one_of(st.sampled_from(EXPRESSIONS), fs_names)
tree = st.lists(st.tuples(fs_names, st.lists(st.tuples(expressions, st.one_of(files, st.none())), max_size=3)),
                max_size=3)


def _write_tree(root, spec):
    """spec: [(patient, [(expression, files or None = a file in its place)])]; a patient with no
    expressions is written as a file. Returns the number of files a photo could be."""
    photos = 0
    for patient, exprs in spec:
        pdir = os.path.join(root, patient)
        if os.path.exists(pdir):
            continue
        if not exprs:
            open(pdir, "wb").close()
            continue
        os.makedirs(pdir)
        for expression, fs in exprs:
            edir = os.path.join(pdir, expression)
            if os.path.exists(edir):
                continue
            if fs is None:
                open(edir, "wb").close()
                continue
            os.makedirs(edir)
            for stem, ext, data in fs:
                path = os.path.join(edir, stem + ext)
                if not os.path.exists(path) and _fs_name(stem + ext):
                    with open(path, "wb") as f:
                        f.write(data)
                    photos += 1
    return photos


@FUZZ
@given(spec=tree)
def test_dataset_folder_of_any_names_and_empty_files(spec):
    with tempfile.TemporaryDirectory() as root:
        _write_tree(root, spec)
        try:
            photos, problems = find_photos(root)
        except DatasetError as e:  # pragma: no cover - find_photos only raises for a missing folder
            pytest.fail(f"find_photos raised for an existing folder: {e}")
        assert photos or problems  # an empty or useless folder is a problem, never silence
        for _, expression, path in photos:
            assert expression in EXPRESSIONS and os.path.isfile(path)
        # No file here is a readable photo (empty or a few random bytes): loading must refuse the
        # dataset, naming every problem, and nothing else may escape.
        with pytest.raises(DatasetError) as e:
            load_dataset(root, resolution=64)
        assert f"has {len(problems) + len(photos)} problem(s)" in str(e.value)


def test_missing_dataset_folder():
    with pytest.raises(DatasetError, match="does not exist"):
        find_photos(os.path.join(tempfile.gettempdir(), "palsysim-no-such-dataset-folder"))


# --- landmark detector settings ------------------------------------------------------------------

@FUZZ
@given(max_faces=st.integers(1, 16), min_confidence=st.one_of(st.floats(), st.floats(0, 1)))
@example(max_faces=1, min_confidence=math.nan)
@example(max_faces=1, min_confidence=math.inf)
def test_detector_cache_is_bounded_for_any_setting(max_faces, min_confidence):
    try:
        detect = lm.detector(max_faces, min_confidence, backend="legacy" if lm.has_legacy_api() else "tasks")
    except InputError as e:
        assert not 0 <= min_confidence <= 1 and "min_confidence" in str(e)
    else:
        assert callable(detect) and 0 <= min_confidence <= 1
    assert len(lm._detectors) <= lm.MAX_DETECTORS
    assert all(key == key for key in lm._detectors)  # a NaN in a key would never match itself: a leak

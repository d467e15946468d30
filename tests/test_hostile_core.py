"""Issue 29, hostile input to the core, the nodes, identity, evaluate and the model manager: each case
ends in a clear message naming the problem and the fix (exit 2 for the CLI, a refusal for the host),
nothing half written, nothing installed that is not what it claims. Real photos, the real host."""
import os

import pytest
from cli_helpers import run_main
from hostile_files import png_claiming
from real_faces import photo_paths

from palsysim.base.photos import MAX_PIXELS
from palsysim.cli import main

# --- 1. a photo too large to decode -------------------------------------------------------------

@pytest.mark.parametrize("width, height", [(40000, 40000), (10000, 9000)])
@pytest.mark.parametrize("command", ["identity", "landmarks", "condition", "measure", "synth", "evaluate"])
def test_a_photo_too_large_to_decode_is_refused_by_every_command(tmp_path, capsys, command, width, height):
    big = png_claiming(tmp_path / "big.png", width, height)
    face = photo_paths()["astronaut"]
    argv = {"identity": lambda: ["identity", face, big, "--backend", "dlib"],
            "landmarks": lambda: ["landmarks", big, "--out", tmp_path / "out"],
            "condition": lambda: ["condition", "--mode", "pf", "--patient", big, "--out", tmp_path / "out.png"],
            "measure": lambda: ["measure", big],
            "synth": lambda: ["synth", big, "--out", tmp_path / "out.png"],
            "evaluate": lambda: evaluation_folders(tmp_path, open(big, "rb").read())}[command]()
    code, err = run_main(capsys, *argv)
    assert code == 2, err
    name = "rest.jpg" if command == "evaluate" else "big.png"
    assert name in err and f"{MAX_PIXELS:,} pixels" in err and "downscale" in err, err
    assert (f"{width}x{height}" in err) if width * height < 2 * 89478485 else f"{width * height:,}" in err, err
    assert "Traceback" not in err and "DecompressionBomb" not in err
    assert not [p for p in ("out", "out.png", "evaluation") if os.path.exists(tmp_path / p)]


# --- 4, 5. evaluate and identity: unreadable photos, thresholds that are not numbers --------------

def evaluation_folders(tmp_path, broken):
    """PATIENTS/p1 with a real grin photo and `broken` as rest.jpg; a method tree with one real image."""
    from PIL import Image
    faces = photo_paths()
    (tmp_path / "patients" / "p1").mkdir(parents=True)
    Image.open(faces["astronaut"]).convert("RGB").save(tmp_path / "patients" / "p1" / "grin.png")
    (tmp_path / "patients" / "p1" / "rest.jpg").write_bytes(broken)
    (tmp_path / "gen" / "p1" / "grin").mkdir(parents=True)
    Image.open(faces["grace_hopper"]).convert("RGB").save(tmp_path / "gen" / "p1" / "grin" / "a_0.png")
    return ["evaluate", "--generated", f"m={tmp_path / 'gen'}", "--patients", tmp_path / "patients",
            "--backend", "dlib", "--out", tmp_path / "evaluation"]


def cut_short_jpeg():
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.open(photo_paths()["astronaut"]).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize("broken", [b"", cut_short_jpeg()], ids=["0 bytes", "cut short"])
def test_evaluate_refuses_an_unreadable_patient_photo_by_name_before_any_work(tmp_path, capsys, broken):
    code, err = run_main(capsys, *evaluation_folders(tmp_path, broken))
    assert code == 2, err
    assert "1 photo(s) cannot be read" in err and os.path.join("p1", "rest.jpg") in err, err
    assert not os.path.exists(tmp_path / "evaluation")


@pytest.mark.parametrize("flag, value", [("--dlib-threshold", "nan"), ("--dlib-threshold", "inf"),
                                         ("--dlib-threshold", "-0.1"), ("--threshold", "nan"),
                                         ("--threshold", "2.5")])
@pytest.mark.parametrize("command", ["identity", "evaluate"])
def test_thresholds_must_be_finite_numbers_in_range(tmp_path, capsys, command, flag, value):
    face = photo_paths()["astronaut"]
    argv = (["identity", face, face, "--backend", "dlib"] if command == "identity"
            else evaluation_folders(tmp_path, open(face, "rb").read()))
    code, err = run_main(capsys, *argv, flag, value)
    assert code == 2, err
    assert f"{flag} {value}" in err and "give a number from" in err, err
    assert not os.path.exists(tmp_path / "evaluation")


def test_identity_of_one_photo_twice_is_one_person(capsys):
    face = photo_paths()["astronaut"]
    code = main(["identity", face, face, "--backend", "dlib"])
    assert code == 0 and "same person" in capsys.readouterr().out


# --- 6, 7. models --fetch from a mirror: files that are not what they claim, downloads cut short -------

@pytest.fixture(scope="module")
def task_bytes(task_file):
    """The bytes of a working face_landmarker.task (the `task_file` fixture, conftest.py)."""
    with open(task_file, "rb") as f:
        return f.read()


def zip_of(members):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def fetch_task(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PALSYSIM_MODEL_MIRROR", server.url("").rstrip("/"))
    with pytest.raises(SystemExit) as done:
        main(["models", "--fetch", "face_landmarker.task", "--quiet", "--models-dir", str(tmp_path)])
    out = capsys.readouterr()
    return done.value.code, out.out + out.err, tmp_path / "mediapipe"


def not_a_task(task_bytes):
    import io
    import zipfile
    names = zipfile.ZipFile(io.BytesIO(task_bytes)).namelist()
    good = {n: zipfile.ZipFile(io.BytesIO(task_bytes)).read(n) for n in names}
    pad = os.urandom(1 << 20)
    return {
        "random bytes": (os.urandom(3 << 20), "not a zip archive"),
        "too small": (task_bytes[:2000], "2,000 bytes"),
        "a zip of other files": (zip_of({"notes.txt": pad}), "face_detector.tflite, face_landmarks_detector.tflite"),
        "a member that is not TFLite": (zip_of({**good, "face_detector.tflite": pad}), "face_detector.tflite is not"),
    }


@pytest.mark.parametrize("case", ["random bytes", "too small", "a zip of other files", "a member that is not TFLite"])
def test_fetch_refuses_an_unverified_file_that_is_not_a_face_landmarker_bundle(
        server, tmp_path, monkeypatch, capsys, task_bytes, case):
    body, words = not_a_task(task_bytes)[case]
    server.files["face_landmarker.task"] = body
    code, text, folder = fetch_task(server, tmp_path, monkeypatch, capsys)
    assert code == 1, text
    assert words in text and "deleted" in text and server.url("face_landmarker.task") in text, text
    assert os.listdir(folder) == []  # neither the model nor a .partial left


def test_fetch_installs_a_real_face_landmarker_bundle_from_a_mirror(server, tmp_path, monkeypatch, capsys, task_bytes):
    server.files["face_landmarker.task"] = task_bytes
    code, text, folder = fetch_task(server, tmp_path, monkeypatch, capsys)
    assert code == 0, text
    assert os.listdir(folder) == ["face_landmarker.task"]
    assert (folder / "face_landmarker.task").read_bytes() == task_bytes


@pytest.mark.parametrize("cut", [300_000, 1_500_000])  # inside the first 1 MiB block, and after it
def test_a_mirror_that_cuts_a_download_short_is_named_and_the_download_resumes(
        server, tmp_path, monkeypatch, capsys, task_bytes, cut):
    server.files["face_landmarker.task"] = task_bytes
    server.cut_after = cut
    code, text, folder = fetch_task(server, tmp_path, monkeypatch, capsys)
    assert code == 1, text
    kept = sorted(os.listdir(folder))
    have = (folder / "face_landmarker.task.partial").stat().st_size if kept else 0
    assert kept in ([], ["face_landmarker.task.partial"]) and have <= cut
    assert f"cut short at {have:,} of {len(task_bytes):,} bytes" in text, text
    assert server.url("face_landmarker.task") in text and "could not be downloaded here" not in text, text
    code, text, folder = fetch_task(server, tmp_path, monkeypatch, capsys)  # the same command again
    assert code == 0, text
    assert server.ranges[-1] == (f"bytes={have}-" if have else None)
    assert (folder / "face_landmarker.task").read_bytes() == task_bytes and os.listdir(folder) == ["face_landmarker.task"]


# --- 2, 3. pack nodes on the real host: null model names, unusable prefixes, file-like summaries ----

def loader_prompt(**inputs):
    from host import TINY_CONTROLNET
    loader = {"control_net_name": TINY_CONTROLNET, "apply": "everywhere", "t_lo": 500, "t_hi": 700,
              "base_control_net_name": "(none)"}
    return {"1": {"class_type": "PalsyTimestepWindowControlNetLoader", "inputs": {**loader, **inputs}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}}


def gate_prompt(photo, node="PalsyPrivacyGate", **inputs):
    gate = {"image": ["1", 0], "reference": ["1", 0], "model_name": "none.onnx", "threshold": 0.28,
            "backend": "dlib", "dlib_threshold": 0.6, **inputs}
    return {"1": {"class_type": "LoadImage", "inputs": {"image": photo}},
            "2": {"class_type": node, "inputs": gate}}


def save_prompt(photo, prefix="hostile/case", summary=""):
    return {"1": {"class_type": "LoadImage", "inputs": {"image": photo}},
            "2": {"class_type": "PalsySaveAnonymized",
                  "inputs": {"images": ["1", 0], "filename_prefix": prefix, "method_summary": summary}}}


@pytest.fixture(scope="module")
def photo(host):
    return host.upload_image(photo_paths()["astronaut"], "hostile_astronaut.png")


def output_files(host):
    return sorted(os.path.relpath(os.path.join(d, f), host.output_dir) for d, _, fs in os.walk(host.output_dir)
                  for f in fs)


def refused(host, prompt, node, *words):
    """The prompt is refused (at validation, or by the node's own InputError) naming `words`; the server
    stays up; no output file appears; the message shows no path of the server's."""
    before = output_files(host)
    result = host.run(prompt)
    assert host.alive(), host.log()[-3000:]
    assert result.status in ("invalid", "error"), result.status
    if result.status == "error":
        assert result.error_type.endswith("InputError"), f"{result.error_type}: {result.error}"
    assert prompt[result.error_node]["class_type"] == node, result.error
    for word in words:
        assert word in result.error, f"{word!r} not in {result.error!r}"
    for leak in (host.output_dir, host.models_dir, "Traceback", "TypeError", "OSError"):
        assert leak not in result.error, result.error
    assert output_files(host) == before
    return result


NULLS = [
    ("loader control_net_name", lambda photo: loader_prompt(control_net_name=None), "control_net_name"),
    ("loader base_control_net_name", lambda photo: loader_prompt(base_control_net_name=None),
     "base_control_net_name"),
    ("gate model_name, arcface", lambda photo: gate_prompt(photo, model_name=None, backend="arcface"), "model_name"),
    ("gate model_name, both", lambda photo: gate_prompt(photo, model_name=None, backend="both"), "model_name"),
    ("dissimilarity model_name", lambda photo: gate_prompt(photo, "PalsyArcFaceDissimilarity", model_name=None,
                                                           backend="arcface"), "model_name"),
]


@pytest.mark.parametrize("case, build, name", NULLS, ids=[c[0] for c in NULLS])
def test_a_null_model_name_is_refused_with_its_input_named(host, photo, case, build, name):
    prompt = build(photo)
    node = prompt["1" if "loader" in case else "2"]["class_type"]
    refused(host, prompt, node, name, "pick")
    good = host.run(loader_prompt())
    assert good.ok, good.error


PREFIXES = [("a NUL", "hostile/a\x00b", "control character"), ("300 characters", "hostile/" + "p" * 300, "300"),
            ("a folder of 300", "hostile/" + "d" * 300 + "/x", "300"), ("outside", "../hostile", "output folder")]


@pytest.mark.parametrize("case, prefix, words", PREFIXES, ids=[c[0] for c in PREFIXES])
def test_an_unusable_filename_prefix_is_refused_before_anything_is_written(host, photo, case, prefix, words):
    refused(host, save_prompt(photo, prefix), "PalsySaveAnonymized", "filename_prefix", words)
    good = host.run(save_prompt(photo, "hostile/after"))
    assert good.ok, good.error


FILE_LIKE = ["from KOBAYASHI_1987.dng", "C:KOBAYASHI_1987", "photo IMG_0042.CR2 of the patient", "scan.nef",
             "x.heic", "DSC01234.ARW", "made from name.JPG", "~/patients/kobayashi", "\\\\server\\share\\x",
             "C:\\photos\\k", "D:k.png", "kobayashi.tar.gz", "see patient.record", "p1/rest", "kobayashi\uff0ejpg",
             "kobayashi\u2024jpg", "kobayashi\u2215rest", "file:kobayashi", "kobayashi_1987.png\u200b",
             "$HOME/x", "KOBAYASHI_1987", "..\\k", "k\u3000.\u3000jpg", "ｋｏｂａｙａｓｈｉ．ｊｐｇ"]
ORDINARY = ["", "Synthetic face made by PalsySim: SD1.5 + ControlNet fine-tuned (partial), "
                "window timesteps 500..700, applied everywhere.",
            "Synthetic face made by PalsySim: SD1.5 + stock ControlNet, zero-shot (no fine-tuning).",
            "PalsySim CODC, left-sided palsy, grade 2 (teaching image).\nNot a real person."]


@pytest.mark.parametrize("summary", FILE_LIKE)
def test_a_method_summary_that_holds_anything_file_like_is_refused(host, photo, summary):
    refused(host, save_prompt(photo, summary=summary), "PalsySaveAnonymized", "method_summary")


@pytest.mark.parametrize("summary", ORDINARY)
def test_an_ordinary_method_summary_is_written_as_the_description(host, photo, summary):
    """No privacy gate feeds this save: a summary is followed by a line saying the image was not checked."""
    from PIL import Image
    result = host.run(save_prompt(photo, "hostile/ordinary", summary))
    assert result.ok, result.error
    (path,) = host.image_paths(result, "2")
    with Image.open(path) as im:
        assert im.text == ({"Description": summary.strip() + "\nIdentity not checked: no privacy gate ran before "
                                           "this save."} if summary else {})


def test_models_table_says_an_installed_unverified_file_is_not_usable(tmp_path, capsys, task_bytes):
    folder = tmp_path / "mediapipe"
    folder.mkdir()
    (folder / "face_landmarker.task").write_bytes(zip_of({"notes.txt": os.urandom(1 << 20)}))
    with pytest.raises(SystemExit):
        main(["models", "--models-dir", str(tmp_path)])
    block = next(b for b in capsys.readouterr().out.split("\n\n") if b.startswith("face_landmarker.task"))
    assert "NOT USABLE: it is a zip without face_detector.tflite" in block, block
    (folder / "face_landmarker.task").write_bytes(task_bytes)
    with pytest.raises(SystemExit):
        main(["models", "--models-dir", str(tmp_path)])
    block = next(b for b in capsys.readouterr().out.split("\n\n") if b.startswith("face_landmarker.task"))
    assert "unverified" in block and "NOT USABLE" not in block, block

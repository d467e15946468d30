"""Issue 29: `experiment run` under hostile settings and files. Every problem of experiment.toml and of
the files and folders it names is refused before the first stage, all of them in one message that names
the setting (or path) and the fix; nothing is written, nothing the user put anywhere is touched.
Issue 24 part 6: Fig. 8's 0..999 window reuses `full`'s net.

Each case runs the real CLI on real photos and real (tiny) model files. Cases whose fault alone would
let a whole run go ahead also carry one known problem (an absent file or an unknown method), so the
test checks that both come in the one message, and fails fast where a check is missing.
"""
import os
import shutil

import numpy as np
import pytest
from cli_helpers import experiment_cli as cli
from real_faces import photo_paths
from tiny_models import write_tiny_checkpoint, write_tiny_controlnet

from palsysim.base.photos import read_image, write_image
from palsysim.experiment import config

BASE = '''\
[data]
patients = "{patients}"
donors = "{donors}"

[models]
checkpoint = "{checkpoint}"
controlnet = "{controlnet}"
identity_backend = "auto"
arcface = ""
lpips_weights = "{lpips}"

[methods]
run = ["zero_shot"]

[ablation]
windows = []

[train]
steps = 1
batch_size = 1
resolution = 64

[generate]
identities = ["man"]
seeds = [1]
steps = 2
cfg = 7.5
resolution = 64
'''
ABSENT = "absent_alexnet.pth"         # a file problem carried by the config cases
UNKNOWN = '"zero_shot", "dreambooth"'  # a config problem carried by the file and folder cases


@pytest.fixture(scope="module")
def files(module_tmp):
    """{name: path} of the inputs every case starts from: a patient (a real face at rest and grinning,
    as photos), a donor, the tiny SD1.5 checkpoint and ControlNet, and broken model files."""
    root = str(module_tmp("hostile_inputs"))
    face = read_image(photo_paths()["grace_hopper"])
    out = {"patients": os.path.join(root, "patients"), "donors": os.path.join(root, "donors"),
           "checkpoint": write_tiny_checkpoint(os.path.join(root, "sd", "tiny_sd15.safetensors")),
           "controlnet": write_tiny_controlnet(os.path.join(root, "sd", "tiny_canny.safetensors")),
           "garbage_safetensors": os.path.join(root, "sd", "garbage.safetensors"),
           "garbage_pth": os.path.join(root, "sd", "garbage.pth")}
    for expression in ("rest", "grin"):
        write_image(os.path.join(out["patients"], "zq_patient", f"{expression}.png"), face)
    write_image(os.path.join(out["donors"], "donor.png"), read_image(photo_paths()["astronaut"])[:, ::-1])
    rng = np.random.default_rng(0)
    for key in ("garbage_safetensors", "garbage_pth"):
        with open(out[key], "wb") as f:
            f.write(rng.bytes(5000))
    return out


def write_settings(exp, files, edits=(), extra=""):
    """EXP/experiment.toml: BASE with the given (old, new) text edits and extra lines at the end."""
    text = BASE.format(lpips="", **{k: files[k] for k in ("patients", "donors", "checkpoint", "controlnet")})
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    os.makedirs(exp, exist_ok=True)
    with open(os.path.join(exp, "experiment.toml"), "w", encoding="utf-8") as f:
        f.write(text + extra)


def stats(*folders):
    """{path: (size, mtime) or "folder"} of everything under the folders: what a refused run must leave as it was."""
    out = {}
    for folder in folders:
        for d, dirs, fs in os.walk(folder):
            out.update({os.path.join(d, x): "folder" for x in dirs})
            out.update({os.path.join(d, x): (os.stat(os.path.join(d, x)).st_size,
                                             os.stat(os.path.join(d, x)).st_mtime_ns) for x in fs})
    return out


def refused(exp, files, *needles):
    """Run the experiment; it must stop before any stage (exit 2, no traceback), in one message holding
    every needle, with nothing written or changed in EXP or among the inputs."""
    watched = [exp, os.path.dirname(files["patients"])]
    before = stats(*watched)
    r = cli("run", exp, "--quiet", timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert r.stderr.count("cannot start") == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)
    assert stats(*watched) == before
    return r.stderr


def absent(files):
    return os.path.join(os.path.dirname(files["patients"]), ABSENT)


# --- 3. the settings: typed, ranged and known --------------------------------------------------------

CONFIG_CASES = {
    "data not a section": ([('[data]\npatients = "{patients}"\ndonors = "{donors}"\n', 'data = "oops"\n')],
                           ["data = 'oops'", "[data]", "[data] patients"]),
    "run a list of lists": ([('run = ["zero_shot"]', 'run = [["zero_shot"]]')], ["[methods] run", "[['zero_shot']]"]),
    "misspelt section": ([("[train]", "[trian]")], ["[trian]", "did you mean [train]?"]),
    "misspelt key": ([("steps = 1\n", "setps = 1\n")], ["[train] setps", "did you mean steps?"]),
    "list for a number": ([("cfg = 7.5", "cfg = [7.5]")], ["[generate] cfg", "[7.5]", "finite number"]),
    "nan": ([("cfg = 7.5", "cfg = nan")], ["[generate] cfg", "nan", "finite"]),
    "out of range": ([("cfg = 7.5", "cfg = -3"), ("batch_size = 1", "batch_size = 0"), ("seeds = [1]", "seeds = [1.5]")],
                     ["[generate] cfg", "[train] batch_size", "[generate] seeds"]),
    "infinite lr": ([("resolution = 64\n\n[generate]", "resolution = 64\nlr = inf\n\n[generate]")], ["[train] lr", "inf"]),
    "misspelt backend": ([('identity_backend = "auto"', 'identity_backend = "arcfce"')],
                         ["[models] identity_backend", "did you mean arcface?"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_bad_setting_is_named_with_its_fix_beside_the_file_problems(case, files, tmp_path):
    edits, needles = CONFIG_CASES[case]
    exp = str(tmp_path / "exp")
    edits = [(old.format(**files), new) for old, new in edits]
    write_settings(exp, files, edits + [('lpips_weights = ""', f'lpips_weights = "{absent(files)}"')])
    refused(exp, files, *needles, "[models] lpips_weights", ABSENT)


# --- 4. the files: exist and are what they claim ------------------------------------------------------

FILE_CASES = {
    "checkpoint is a ControlNet": ("checkpoint", "controlnet", ["[models] checkpoint", "tiny_canny.safetensors", "ControlNet"]),
    "checkpoint is random bytes": ("checkpoint", "garbage_safetensors", ["[models] checkpoint", "garbage.safetensors"]),
    "controlnet is a checkpoint": ("controlnet", "checkpoint", ["[models] controlnet", "tiny_sd15.safetensors", "checkpoint"]),
    "controlnet is random bytes": ("controlnet", "garbage_pth", ["[models] controlnet", "garbage.pth"]),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_a_model_file_of_the_wrong_kind_is_refused_with_the_config_problems(case, files, tmp_path):
    key, given, needles = FILE_CASES[case]
    exp = str(tmp_path / "exp")
    write_settings(exp, files, [(f'{key} = "{files[key]}"', f'{key} = "{files[given]}"'),
                                ('run = ["zero_shot"]', f"run = [{UNKNOWN}]")])
    refused(exp, files, *needles, "dreambooth")


@pytest.mark.parametrize("backend, arcface, needles", [
    ("auto", "/etc/hostname", ["[models] arcface", "hostname", "ONNX"]),
    ("arcface", "", ["[models] identity_backend", "arcface", "[models] arcface"]),
    ("both", "/nonexistent/w600k_r50.onnx", ["[models] arcface", "w600k_r50.onnx"]),
])
def test_an_identity_backend_without_a_working_model_is_refused_before_generation(backend, arcface, needles,
                                                                                 files, tmp_path):
    exp = str(tmp_path / "exp")
    write_settings(exp, files, [('identity_backend = "auto"', f'identity_backend = "{backend}"'),
                                ('arcface = ""', f'arcface = "{arcface}"'), ('run = ["zero_shot"]', f"run = [{UNKNOWN}]")])
    refused(exp, files, *needles, "dreambooth")


def test_broken_lpips_weights_are_refused_before_generation(files, tmp_path):
    exp = str(tmp_path / "exp")
    write_settings(exp, files, [('lpips_weights = ""', f'lpips_weights = "{files["garbage_pth"]}"'),
                                ('run = ["zero_shot"]', f"run = [{UNKNOWN}]")])
    refused(exp, files, "[models] lpips_weights", "garbage.pth", "dreambooth")


# --- 1, 2, 5. what the experiment would delete or overwrite -----------------------------------------

def test_a_user_controlnet_named_like_a_trained_net_is_never_deleted(files, tmp_path):
    exp = str(tmp_path / "exp")
    theirs = os.path.join(exp, "models", "controlnet", "partial_500_700.safetensors")
    os.makedirs(os.path.dirname(theirs))
    shutil.copyfile(files["controlnet"], theirs)
    write_settings(exp, files, [(f'controlnet = "{files["controlnet"]}"', f'controlnet = "{theirs}"'),
                                ('run = ["zero_shot"]', 'run = ["partial"]')])
    data = open(theirs, "rb").read()
    refused(exp, files, theirs, "partial")
    assert open(theirs, "rb").read() == data


def test_a_controlnet_file_named_like_a_trained_net_is_refused(files, tmp_path):
    """Outside EXP too: its link in EXP/models/controlnet would be the trained net's name, and the
    zero-shot run would sample with the trained net instead of the stock one."""
    exp, named = str(tmp_path / "exp"), str(tmp_path / "partial_500_700.safetensors")
    shutil.copyfile(files["controlnet"], named)
    write_settings(exp, files, [(f'controlnet = "{files["controlnet"]}"', f'controlnet = "{named}"'),
                                ('run = ["zero_shot"]', f'run = ["partial", {UNKNOWN}]')])
    refused(exp, files, "partial_500_700.safetensors", "rename", "dreambooth")


@pytest.mark.parametrize("where", ["patients is the experiment folder", "patients inside the experiment folder",
                                   "experiment folder inside patients", "experiment folder inside donors"])
def test_patients_and_the_experiment_folder_never_overlap(where, files, tmp_path):
    patients, donors = str(tmp_path / "patients"), str(tmp_path / "donors")
    shutil.copytree(files["patients"], patients)
    shutil.copytree(files["donors"], donors)
    exp = {"patients is the experiment folder": patients,
           "patients inside the experiment folder": str(tmp_path / "exp"),
           "experiment folder inside patients": os.path.join(patients, "exp"),
           "experiment folder inside donors": os.path.join(donors, "exp")}[where]
    if where == "patients inside the experiment folder":
        patients = os.path.join(exp, "patients")
        shutil.copytree(files["patients"], patients)
    write_settings(exp, files, [(f'patients = "{files["patients"]}"', f'patients = "{patients}"'),
                                (f'donors = "{files["donors"]}"', f'donors = "{donors}"'),
                                ('run = ["zero_shot"]', f"run = [{UNKNOWN}]")])
    overlapping = donors if where.endswith("donors") else patients
    refused(exp, files, os.path.abspath(exp), overlapping, "dreambooth")


@pytest.mark.parametrize("what", ["report.md", "generated/zero_shot/notes.txt", "figures/fig7.png", "prepared/my.png",
                                  "models/checkpoints/tiny_sd15.safetensors", "state.json"])
def test_a_user_file_where_the_experiment_writes_is_refused(what, files, tmp_path):
    exp = str(tmp_path / "exp")
    write_settings(exp, files, [('run = ["zero_shot"]', f"run = [{UNKNOWN}]")])
    theirs = os.path.join(exp, what)
    os.makedirs(os.path.dirname(theirs), exist_ok=True)
    with open(theirs, "w") as f:
        f.write("the user's own notes\n")
    owned = what.split("/")[0] if what.split("/")[0] in ("generated", "prepared", "figures") else what
    owned = "generated/zero_shot" if what.startswith("generated") else owned
    refused(exp, files, os.path.join(exp, owned), "dreambooth")
    assert open(theirs).read() == "the user's own notes\n"


# --- one message for everything --------------------------------------------------------------------

def test_every_kind_of_problem_comes_in_one_message(files, tmp_path):
    exp = str(tmp_path / "exp")
    write_settings(exp, files, [("[train]", "[trian]"), ("cfg = 7.5", "cfg = nan"),
                                ('run = ["zero_shot"]', 'run = [["zero_shot"]]'),
                                (f'checkpoint = "{files["checkpoint"]}"', f'checkpoint = "{files["controlnet"]}"'),
                                ('arcface = ""', 'arcface = "/etc/hostname"')])
    with open(os.path.join(exp, "report.md"), "w") as f:
        f.write("mine\n")
    message = refused(exp, files, "[trian]", "[generate] cfg", "[methods] run", "[models] checkpoint",
                      "[models] arcface", os.path.join(exp, "report.md"))
    assert len([line for line in message.splitlines() if line.startswith("  ")]) >= 6, message


# --- issue 24 part 6: Fig. 8's 0..999 window is `full`'s net --------------------------------------------

def test_the_full_window_of_fig8_reuses_the_full_net(files, tmp_path):
    exp = str(tmp_path / "exp")
    write_settings(exp, files, [('run = ["zero_shot"]', 'run = ["full", "partial"]'),
                                ("windows = []", "windows = [[0, 200], [0, 999], [500, 700]]")])
    e = config.load(exp)
    assert not e.problems, e.problems
    assert list(e.nets()) == ["full_0_999", "partial_500_700", "partial_0_200"]
    runs = e.runs()
    assert runs["window_0_999"] == ("palsy_pf", "full_0_999", "pf") and runs["full"][1] == "full_0_999"
    assert runs["window_500_700"][1] == runs["partial"][1] == "partial_500_700"
    assert e.nets()["full_0_999"] == ("full", 0, 999)


def test_model_files_of_the_right_kind_pass_by_their_headers(files, tmp_path):
    """The other side of the header checks: the tiny SD1.5 checkpoint and its ControlNet, as safetensors
    and as a PyTorch pickle (read mapped, weights only), raise nothing."""
    from palsysim.experiment import preflight
    exp = str(tmp_path / "exp")
    pth = write_tiny_controlnet(str(tmp_path / "tiny_canny.pth"))
    for controlnet in (files["controlnet"], pth):
        write_settings(exp, files, [(f'controlnet = "{files["controlnet"]}"', f'controlnet = "{controlnet}"')])
        assert preflight.model_problems(config.load(exp)) == []
    assert preflight.checkpoint_problem(preflight.tensor_shapes(pth)).startswith("is a ControlNet")


# --- issue 27: the messages say what to do --------------------------------------------------------------

def test_a_missing_model_names_its_download_and_a_patient_without_rest_photo_its_folder(files, tmp_path):
    patients = tmp_path / "patients"
    write_image(str(patients / "zq_norest" / "grin.png"),
                read_image(os.path.join(files["patients"], "zq_patient", "grin.png")))
    exp = str(tmp_path / "exp")
    write_settings(exp, files, [(f'patients = "{files["patients"]}"', f'patients = "{patients}"'),
                                (f'checkpoint = "{files["checkpoint"]}"', f'checkpoint = "{tmp_path / "my_sd15.ckpt"}"'),
                                ('run = ["zero_shot"]', 'run = ["zero_shot", "partial_codc"]')])
    refused(exp, files, f"[models] checkpoint: no such file {tmp_path / 'my_sd15.ckpt'}",
            "python -m palsysim models --fetch v1-5-pruned-emaonly.safetensors",
            f"[data] patients: {patients / 'zq_norest'} has no rest photo", str(patients / "zq_norest" / "rest.png"))

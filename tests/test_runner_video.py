"""Video jobs in the headless runner (issue 26): PATIENTS/<patient>/<expression>.mp4 through the shipped
video workflow on the real host with the tiny models, one mp4 per job; uploads re-encoded without the
file's tags; a rerun does nothing, a killed run finishes with the same files; photo and video workflows
refuse the other kind before any server is asked; the run decodes the video once."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from host import TINY_CHECKPOINT, TINY_CONTROLNET
from real_faces import photo_paths
from runner_helpers import PATIENT, REPO, api, make_patients, make_video_patients, run_runner, runner_cmd

from palsysim.base.video_files import read_video

TAG = "zq_camera_tag_5521"  # in the source file's container tags: must reach no server and no output
SEEDS = ["1", "2"]
# The video workflow's models and sampling set to the tiny ones (its latent is sized by the conditions).
TINY_VIDEO = ["--set", f"checkpoint.ckpt_name={TINY_CHECKPOINT}", "--set", f"controlnet.control_net_name={TINY_CONTROLNET}",
              "--set", "video conditions.size=64", "--set", "KSampler.steps=1",
              "--bypass", "privacy gate",  # tiny models sample noise, not faces: the gate would hold it all back
              "--donor", photo_paths()["astronaut"], "--seeds", *SEEDS]
EXPECTED = [f"{PATIENT}/grin/a_man_{s}.mp4" for s in SEEDS]


def run_video(host, patients, out, *extra, counts=None):
    return run_runner(api("palsy_video"), host.url, patients, out, *TINY_VIDEO, *extra, tiny=False, counts=counts)


def files(out):
    """{relative path: bytes} of every file under out."""
    return {os.path.relpath(os.path.join(d, f), out): open(os.path.join(d, f), "rb").read()
            for d, _, fs in os.walk(out) for f in fs}


def uploads(host):
    folder = os.path.join(host.input_dir, "palsysim")
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


@pytest.fixture(scope="module")
def first_run(host, tmp_path_factory):
    """Two video jobs (one 6-frame grin x two seeds), run with --keep-uploads so that the upload is
    looked at; the run's upload folder is deleted afterwards. Its decodes are counted in p/../counts.json."""
    root = tmp_path_factory.mktemp("video")
    patients = make_video_patients(root / "p", ["grin"], TAG)
    before = uploads(host)
    r = run_video(host, patients, root / "out", "--keep-uploads", counts=root / "counts.json")
    (run,) = uploads(host) - before
    folder = os.path.join(host.input_dir, "palsysim", run)
    kept = {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)}
    shutil.rmtree(folder)
    return r, patients, root / "out", kept


def test_a_video_job_gives_an_mp4_of_every_frame_and_no_patient_file_detail(host, first_run):
    r, patients, out, kept = first_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 job(s) done" in r.stdout
    written = files(out)
    assert sorted(written) == sorted(EXPECTED + ["manifest.json"])
    for rel in EXPECTED:
        frames, fps = read_video(os.path.join(out, rel))
        assert len(frames) == 6 and fps == pytest.approx(12.0) and frames[0].shape == (64, 64, 3)
        assert PATIENT.encode() not in written[rel]
    for data in written.values():
        assert TAG.encode() not in data and str(patients).encode() not in data
    jobs = json.loads(written["manifest.json"])["jobs"]
    assert {k: (j["status"], j["images"]) for k, j in jobs.items()} == {
        f"{PATIENT}/grin/a_man_{s}": ("done", [f"{PATIENT}/grin/a_man_{s}.mp4"]) for s in SEEDS}
    # The server got the donor's PNG and a fresh mp4, both under content names.
    assert sorted(n[24:] for n in kept) == [".mp4", ".png"] and all(n[:24].isalnum() for n in kept)


def test_the_upload_holds_the_frames_and_none_of_the_source_files_bytes(first_run, tmp_path):
    from palsysim.comfy.plan import video_mp4
    _, patients, _, kept = first_run
    source = os.path.join(patients, PATIENT, "grin.mp4")
    _, name = video_mp4(source)  # named by the hash of the decoded frames and rate
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(kept[name])
    (frames, fps), (theirs, their_fps) = read_video(source), read_video(str(copy))
    assert len(theirs) == len(frames) == 6 and their_fps == fps == pytest.approx(12.0)
    # A fresh encoding of the same frames (H.264 at crf 18: within a few grey levels), without the tags.
    assert max(abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, theirs)) < 3
    assert TAG.encode() in open(source, "rb").read() and TAG.encode() not in kept[name]


def test_the_run_decodes_the_video_once(first_run):
    """Its upload is made when the video is checked, before any server starts, and sent as made."""
    r, patients, _, _ = first_run
    counts = json.loads(open(os.path.join(os.path.dirname(patients), "counts.json")).read())
    assert counts["video_decoded"] == {os.path.join(patients, PATIENT, "grin.mp4"): 1}, counts
    assert not counts["video_checked"], counts


def test_a_second_run_does_nothing(host, first_run):
    r, patients, out, _ = first_run
    before = files(out)
    again = run_video(host, patients, out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 job(s) done, 2 already done" in again.stdout
    assert files(out) == before


def test_a_killed_run_finishes_with_the_same_files(host, first_run, tmp_path):
    _, patients, first_out, _ = first_run
    out = tmp_path / "out"
    cmd = runner_cmd(api("palsy_video"), host.url, patients, out, *TINY_VIDEO, tiny=False)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest, done, deadline = out / "manifest.json", [], time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not done:
        if manifest.exists():
            done = [k for k, j in json.loads(manifest.read_text())["jobs"].items() if j["status"] == "done"]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(done) == 1, f"killed too late or never: {done}\n{proc.stderr.read().decode()[-2000:]}"
    r = run_video(host, patients, out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 job(s) done, 1 already done" in r.stdout
    # One server, one seed per job: the same videos, byte for byte, as the uninterrupted run's.
    assert files(out).keys() == files(first_out).keys()
    assert {k: v for k, v in files(out).items() if k.endswith(".mp4")} == \
        {k: v for k, v in files(first_out).items() if k.endswith(".mp4")}


def test_a_photo_workflow_refuses_video_patients_and_the_reverse(tmp_path):
    videos = make_video_patients(tmp_path / "v", ["grin"], TAG)
    photos = make_patients(tmp_path / "p", ["grin"])
    nobody = "http://127.0.0.1:9"  # refused before any server is asked: none answers here
    r = run_runner(api("palsy_pf"), nobody, videos, tmp_path / "o1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"videos: {PATIENT}/grin.mp4" in r.stderr and "palsy_video.json" in r.stderr, r.stderr
    r = run_runner(api("palsy_video"), nobody, photos, tmp_path / "o2", tiny=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"photos: {PATIENT}/grin.png" in r.stderr and "give videos" in r.stderr, r.stderr
    assert "no ComfyUI server" not in r.stderr


def test_a_video_the_gate_holds_back_is_recorded_with_its_reason(host, first_run, tmp_path):
    # Not bypassed: the tiny models' noise frames show no face, so the gate holds back every frame.
    _, patients, _, _ = first_run
    gated = [a for a in TINY_VIDEO if a not in ("--bypass", "privacy gate")]
    before = uploads(host)
    r = run_runner(api("palsy_video"), host.url, patients, tmp_path / "out", *gated[:-1], tiny=False)  # seed 1 only
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 job(s) done" in r.stdout and "1 image(s) held back" in r.stdout, r.stdout
    (job,) = json.loads((tmp_path / "out" / "manifest.json").read_text())["jobs"].values()
    assert job["status"] == "held_back" and job["images"] == [] and job["held_back"] == 1
    assert job["reports"]["privacy gate"].startswith("0 of 6 passed, 6 held back (6 with no face")  # the gate's reason
    assert files(tmp_path / "out").keys() == {"manifest.json"}
    assert uploads(host) == before  # its uploads deleted, as a photo run's are

"""Video decodes in one evaluate and one runner call: prints counts and seconds, asserts nothing.

    .venv/bin/python tests/bench_video_decodes.py [FRAMES]

Writes a real-face grin (tests/support/real_faces.write_expression_video, 512 px wide, cropped to 512 x 512,
30 fps, FRAMES frames, default 300) as a patient's video and a copy of it as one method's generated video; times
the one video decoder (base/video_files._decode) through `evaluate --backend dlib` on them, then through `run` of
the shipped video workflow with the tiny models on the real host. Decodes to frames and checks that keep no
frame (check_video) are counted apart.
"""
import os
import shutil
import sys
import tempfile
import time

import palsysim.base.video_files as video_files

spent = {"decoded": [0, 0.0], "checked": [0, 0.0]}
decode = video_files._decode


def timed_decode(path, *args, **kw):
    start = time.perf_counter()
    try:
        return decode(path, *args, **kw)
    finally:
        figures = spent["checked" if kw.get("keep") is False else "decoded"]
        figures[0] += 1
        figures[1] += time.perf_counter() - start


video_files._decode = timed_decode  # before palsysim.cli imports the readers: every decode is timed


def command(cli, argv):
    """The command line's main(argv); `run` ends by sys.exit -> its exit code."""
    try:
        return cli(argv)
    except SystemExit as e:
        return e.code


def report(what, start):
    (n, s), (c, cs) = spent["decoded"], spent["checked"]
    print(f"{what}: wall {time.perf_counter() - start:.1f} s; {n} decode(s) to frames, {s:.2f} s; "
          f"{c} check(s) keeping no frame, {cs:.2f} s", flush=True)
    spent.update(decoded=[0, 0.0], checked=[0, 0.0])


def main(frames):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
    from host import TINY_CHECKPOINT, TINY_CONTROLNET, start_host
    from real_faces import photo_paths, write_expression_video
    from tiny_models import write_tiny_checkpoint, write_tiny_controlnet

    from palsysim.base.paths import REPO
    from palsysim.cli import main as cli

    root = tempfile.mkdtemp(prefix="bench_video_decodes_")
    try:
        patients = os.path.join(root, "patients", "p1")
        generated = os.path.join(root, "generated", "copy", "p1", "grin")
        os.makedirs(patients)
        os.makedirs(generated)
        video = write_expression_video(os.path.join(root, "tall.mp4"), frames=frames, width=512, fps=30.0)
        grin, fps = video_files.read_video(video)
        top = (grin[0].shape[0] - 512) // 2
        video_files.write_video(os.path.join(patients, "grin.mp4"), [f[top:top + 512] for f in grin], fps)
        shutil.copy(os.path.join(patients, "grin.mp4"), os.path.join(generated, "a_man_1.mp4"))
        spent.update(decoded=[0, 0.0], checked=[0, 0.0])

        start = time.perf_counter()
        command(cli, ["evaluate", "--generated", os.path.join(root, "generated"), "--patients",
                      os.path.join(root, "patients"), "--backend", "dlib", "--out", os.path.join(root, "evaluated")])
        report("evaluate (the patient's video and one generated video)", start)

        server = start_host(os.path.join(root, "host"), wait=False)
        try:
            write_tiny_checkpoint(os.path.join(root, "host", "models", "checkpoints", TINY_CHECKPOINT))
            write_tiny_controlnet(os.path.join(root, "host", "models", "controlnet", TINY_CONTROLNET))
            server.wait_ready()
            start = time.perf_counter()
            command(cli, ["run", os.path.join(REPO, "workflows", "api", "palsy_video.json"), "--server", server.url,
                          "--patients", os.path.join(root, "patients"), "--out", os.path.join(root, "out"), "--quiet",
                          "--set", f"checkpoint.ckpt_name={TINY_CHECKPOINT}",
                          "--set", f"controlnet.control_net_name={TINY_CONTROLNET}",
                          "--set", "video conditions.size=64", "--set", "KSampler.steps=1", "--bypass", "privacy gate",
                          "--donor", photo_paths()["astronaut"], "--seeds", "1"])
            report("run (one video job, tiny models)", start)
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)

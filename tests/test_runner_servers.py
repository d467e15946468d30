"""The headless runner over several ComfyUI servers: three private real servers on loopback share one
batch, one of them is killed mid-batch; every job is done once, and the images are the bytes a
one-server run writes."""
import json
import os
import subprocess

import requests

from runner_helpers import (NO_ARCFACE, REPO, api, history_seeds, kill_mid_run, make_patients, own_server, pngs, queued,
                            run_runner, runner_cmd)

SEEDS = [str(s) for s in range(7601, 7609)]  # unique to this test
EXPRESSIONS = ["rest", "grin"]


def test_three_servers_one_killed_mid_batch_every_job_once_same_images(host, tmp_path):
    patients = make_patients(tmp_path / "p", EXPRESSIONS)
    alone = run_runner(api("palsy_pf"), host.url, patients, tmp_path / "alone", *NO_ARCFACE, "--seeds", *SEEDS)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    servers = [own_server(host, tmp_path / f"server{k}") for k in range(3)]
    try:
        for s in servers:
            s.wait_ready()
        out = tmp_path / "shared"
        cmd = runner_cmd(api("palsy_pf"), servers[0].url, patients, out, *NO_ARCFACE, "--seeds", *SEEDS,
                         "--keep-uploads")  # and the servers' /history, read below
        for s in servers[1:]:
            cmd += ["--server", s.url]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        victim = servers[1]
        # Killed once the batch is under way and the victim holds a prompt of ours.
        stdout, stderr = kill_mid_run(proc, victim, lambda: pngs(out) and queued(victim))
        assert proc.returncode == 0, stdout + stderr
        assert f"lost the ComfyUI server at {victim.url}" in stderr, stderr

        jobs = json.loads((out / "manifest.json").read_text())["jobs"]
        expected = {f"zq_patient_7731/{e}/a_man_{s}" for e in EXPRESSIONS for s in SEEDS}
        assert set(jobs) == expected and all(j["status"] == "done" for j in jobs.values())
        by_server = {s.url: sum(j["server"] == s.url for j in jobs.values()) for s in servers}
        assert by_server[servers[0].url] and by_server[servers[2].url], by_server  # the survivors shared the rest
        # Done once: what the survivors ran plus what the victim finished is the batch, no more.
        ran = history_seeds(servers[0]) + history_seeds(servers[2])
        assert len(ran) + by_server[victim.url] == len(expected), (ran, by_server)

        alone_files = {os.path.relpath(p, tmp_path / "alone"): open(p, "rb").read() for p in pngs(tmp_path / "alone")}
        shared_files = {os.path.relpath(p, out): open(p, "rb").read() for p in pngs(out)}
        assert len(shared_files) == len(expected) and shared_files.keys() == alone_files.keys()
        assert all(shared_files[k] == alone_files[k] for k in alone_files)  # bit-identical
    finally:
        for s in servers:
            s.stop()


def test_bench_generate_times_every_mode_and_host_count(host):
    from host import TINY_CHECKPOINT, TINY_CONTROLNET

    from palsysim.bench import pipeline as bench
    lines = []
    res = bench.generate(host.models_dir, TINY_CHECKPOINT, TINY_CONTROLNET, servers=(2,), jobs=2, size=64, steps=1,
                         log=lines.append)
    assert set(res["modes"]) == {"none", "everywhere", "window_only", "window_then_base"}
    assert all(s > 0 for s in res["modes"].values()) and res["servers"][2] > 0
    assert any("2 host(s)" in line for line in lines)  # a smoke test: no speed is asserted


def test_bench_runner_times_the_runner_against_a_bare_loop_and_prepare_per_photo(host):
    from host import TINY_CHECKPOINT, TINY_CONTROLNET

    from palsysim.bench.runner import prepare_per_photo, runner_overhead
    uploads = os.path.join(host.input_dir, "palsysim")
    before = (set(requests.get(host.url + "/history", timeout=30).json()),
              sorted(os.listdir(uploads)) if os.path.isdir(uploads) else [])
    lines = []
    res = runner_overhead(host.models_dir, TINY_CHECKPOINT, TINY_CONTROLNET, jobs=2, server=host.url,
                          log=lines.append)
    # nothing of the bench is left on the server: no prompt in /history, no uploaded photo
    assert (set(requests.get(host.url + "/history", timeout=30).json()),
            sorted(os.listdir(uploads)) if os.path.isdir(uploads) else []) == before
    assert res["runner_s"] > 0 and res["bare_s"] > 0 and res["ratio"] == res["runner_s"] / res["bare_s"]
    assert any("runner / bare loop" in line for line in lines)  # a smoke test: no speed is asserted
    prep = prepare_per_photo(host.models_dir, TINY_CHECKPOINT, TINY_CONTROLNET, photos=2, log=lines.append)
    assert prep["photos"] == 2 and prep["per_photo_s"] > 0

"""The headless runner (python -m palsysim run) when its server goes away mid-batch: a private real
server is killed after the first image is written and started again on the same port; the runner
waits, queues the lost job again, and finishes without redoing written images. And a photo that two
jobs share is sent once, never rewritten under a prompt that is reading it."""
import json
import os
import subprocess
import time

from host import start_host
from runner_helpers import NO_ARCFACE, REPO, TINY, api, history_seeds, make_patients, own_server, pngs, runner_cmd

from palsysim.base.layout import find_patients
from palsysim.comfy.batch import run_batch
from palsysim.comfy.client import Client
from palsysim.comfy.plan import prepare_graph


def test_the_runner_survives_a_server_restart_mid_batch(host, tmp_path):
    workdir = str(tmp_path / "server")
    server = own_server(host, workdir)
    try:
        server.wait_ready()
        port = int(server.url.rsplit(":", 1)[1])
        patients = make_patients(tmp_path / "p", ["rest"])
        out = tmp_path / "out"
        seeds = [str(s) for s in range(7401, 7406)]  # unique to this test
        proc = subprocess.Popen(runner_cmd(api("palsy_pf"), server.url, patients, out, *NO_ARCFACE, "--seeds", *seeds,
                                           "--reconnect-timeout", "120", "--keep-uploads"),  # /history read below
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not pngs(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        server.proc.kill()  # a crash, mid-batch: no chance to finish the prompt in flight
        server.proc.wait()
        written = {p: os.stat(p).st_mtime_ns for p in pngs(out)}
        assert proc.poll() is None and 1 <= len(written) < len(seeds), \
            f"the kill came too late or never: {sorted(written)}\n{proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"

        server = start_host(workdir, port=port)  # same port, same folders: an empty queue and history
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout + stderr
        assert "lost the ComfyUI server" in stderr and "answers again" in stderr, stderr
        assert sorted(os.path.basename(p) for p in pngs(out)) == [f"a_man_{s}.png" for s in seeds]
        assert all(os.stat(p).st_mtime_ns == m for p, m in written.items())  # never rewritten
        rerun = history_seeds(server)  # what the restarted server ran: only what was not written
        assert len(rerun) == len(set(rerun)) and set(rerun) <= {int(s) for s in seeds}
        assert not {int(os.path.basename(p)[:-4].rsplit("_", 1)[1]) for p in written} & set(rerun), rerun
        jobs = json.loads((out / "manifest.json").read_text())["jobs"]
        assert len(jobs) == len(seeds) and all(j["status"] == "done" for j in jobs.values())
    finally:
        server.stop()



class CountingClient(Client):
    """A real client that also counts the uploads it sends."""

    def __init__(self, url):
        super().__init__(url)
        self.sent = []

    def upload(self, data, name=None):
        self.sent.append(data)
        return super().upload(data, name)


def test_a_photo_two_expressions_share_is_uploaded_once(host, tmp_path):
    # Uploads overwrite by content name: sending the same photo again while the server's LoadImage reads
    # the first copy gave "broken PNG file" in CI. Same bytes, two paths: one upload per server.
    patients = make_patients(tmp_path / "p", ["rest", "grin", "whistle"])
    client = CountingClient(host.url)
    graph = prepare_graph(api("palsy_pf"), client, TINY[1::2], [NO_ARCFACE[1]])
    summary = run_batch([client], graph, find_patients(str(patients), None), str(tmp_path / "out"),
                        seeds=[7411, 7412], progress=False)
    assert summary["done"] == 6 and not summary["failed"], summary
    assert len(client.sent) == 1

"""Server memory under repeated landmark prompts (issue 12, item 9): prints RSS figures, asserts nothing.

    .venv/bin/python tests/bench_server_memory.py [N]

Starts the real host with the pack (tests/support/host.py), runs one good PalsyFaceLandmarks prompt, then N
(default 30) prompts with a bare NaN min_confidence, then N good prompts each with its own
min_confidence (0.30, 0.31, ...: every value a new detector setting). Prints the server's resident
memory after each phase. A NaN must be refused at validation (no detector built) and the detector
cache must stay bounded, so neither phase may grow the server by a detector per prompt.
"""
import json
import os
import sys
import tempfile
import time
import uuid

import psutil
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "support"), os.path.dirname(HERE)]
from host import start_host  # noqa: E402
from host_graphs import ASTRONAUT, landmarks_graph  # noqa: E402


def post_raw(host, prompt):
    """POST /prompt with the JSON as Python writes it (a bare NaN) and wait; returns 'invalid' or the status."""
    prompt_id = uuid.uuid4().hex
    body = json.dumps({"prompt": prompt, "client_id": host.client_id, "prompt_id": prompt_id})
    r = requests.post(host.url + "/prompt", data=body, headers={"Content-Type": "application/json"}, timeout=60)
    if r.status_code == 400:
        return "invalid"
    r.raise_for_status()
    while True:
        entry = host.get(f"/history/{prompt_id}").get(prompt_id)
        if entry:
            return entry["status"]["status_str"]
        time.sleep(0.05)


def main(n=30):
    with tempfile.TemporaryDirectory() as work:
        host = start_host(work)
        try:
            rss = lambda: psutil.Process(host.proc.pid).memory_info().rss / 2 ** 20  # noqa: E731
            name = host.upload_image(ASTRONAUT, "bench_astro.png")
            assert post_raw(host, landmarks_graph(name, 0.5)) == "success"
            start = rss()
            print(f"after one good prompt: {start:.0f} MiB")
            outcomes = [post_raw(host, landmarks_graph(name, float("nan"))) for _ in range(n)]
            nan_rss = rss()
            print(f"after {n} NaN min_confidence prompts ({', '.join(sorted(set(outcomes)))}): {nan_rss:.0f} MiB "
                  f"({(nan_rss - start) / n:+.2f} MiB per prompt)")
            outcomes = [post_raw(host, landmarks_graph(name, round(0.30 + 0.01 * i, 2))) for i in range(n)]
            distinct_rss = rss()
            print(f"after {n} prompts of distinct min_confidence ({', '.join(sorted(set(outcomes)))}): "
                  f"{distinct_rss:.0f} MiB ({(distinct_rss - nan_rss) / n:+.2f} MiB per prompt)")
        finally:
            host.stop()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))

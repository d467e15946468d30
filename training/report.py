"""What a run leaves next to its output: train.json (settings and per-step log) and loss.png.

Both are rewritten at every checkpoint, so a run that stops early still explains itself. Neither
holds a path, a file name of the dataset or anything computed from a single photo.

A process killed outright (kill -9, out of memory, power cut) cannot update its train.json, which
then still says "running"; read_log, and `python -m training.report OUT.safetensors`, tell from the
recorded process id that it is gone and say "killed" instead. --resume records it in "history".
"""
import json
import os
import socket
import sys

from .checkpointing import write_atomically


def this_process():
    """What read_log needs to tell later whether the run is still alive (no path, no user data)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _alive(process):
    """False only when it is certain that the process which wrote the log is gone."""
    if not process or process.get("host") != socket.gethostname():
        return True  # another machine's run (or an old log): cannot be told from here
    try:
        os.kill(process["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # the pid may have been reused by an unrelated process since
        with open(f"/proc/{process['pid']}/cmdline", "rb") as f:
            return b"training" in f.read()
    except OSError:
        return True


def read_log(path):
    """train.json as a dict, with its status as it stands now: a "running" run whose process is gone was killed."""
    with open(path, encoding="utf-8") as f:
        log = json.load(f)
    if log.get("status") == "running" and not _alive(log.get("process")):
        saved = log["steps"][-1]["step"] if log.get("steps") else 0
        log["status"] = (f"killed: the process ended without a clean stop (kill -9, out of memory, power cut); "
                         f"the last saved state is step {saved}: run the same command with --resume to continue")
    return log


def write_log(path, log):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(log, f, indent=1)
    write_atomically(path, write)


def smoothed(values, weight=0.9):
    """Exponential moving average, the usual way to read a noisy diffusion loss."""
    out, avg = [], None
    for v in values:
        avg = v if avg is None else weight * avg + (1 - weight) * v
        out.append(avg)
    return out


def plot_loss(path, losses, title):
    """loss.png: per-step loss and its moving average against the step."""
    import matplotlib
    matplotlib.use("Agg")  # no display on a training server
    import matplotlib.pyplot as plt
    steps = list(range(1, len(losses) + 1))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, losses, lw=0.8, alpha=0.4, label="loss")
    ax.plot(steps, smoothed(losses), lw=1.6, label="moving average")
    ax.set_xlabel("step")
    ax.set_ylabel("noise-prediction MSE")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main(argv=None):
    """python -m training.report OUT.safetensors: the run's status and last loss, from OUT_training/train.json."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m training.report OUT.safetensors", file=sys.stderr)
        return 2
    path = os.path.join(os.path.splitext(os.path.abspath(argv[0]))[0] + "_training", "train.json")
    try:
        log = read_log(path)
    except (OSError, ValueError) as e:
        print(f"training.report: cannot read {path}: {e}", file=sys.stderr)
        return 2
    steps = log.get("steps") or []
    last = f", last loss {steps[-1]['loss']:.4f}" if steps else ""
    print(f"{log['status']} ({len(steps)} of {log['settings']['steps']} steps{last})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

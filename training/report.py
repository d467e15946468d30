"""What a run leaves next to its output: train.json (settings and per-step log) and loss.png.

Both are rewritten at every checkpoint, so a run that stops early still explains itself. Neither
holds a path, a file name of the dataset or anything computed from a single photo.
"""
import json

from .checkpointing import write_atomically


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

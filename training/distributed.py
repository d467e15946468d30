"""Training under torchrun: `torchrun --nproc-per-node N -m training ...` runs N ranks with DistributedDataParallel.

Every rank draws the whole global batch of a step (images, timesteps, noise: functions of (seed, step)
alone) and trains on its own slice of it; DDP averages the gradients, so the update is the global
batch's mean whatever N is, up to floating-point order. Rank 0 writes every file; a rank that dies
ends the run (torchrun stops the others) with the last saved state intact for --resume.
Without torchrun (no WORLD_SIZE) this is one process and nothing here does anything.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .memory import pick_device


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self):
        """Whether this process writes files and talks to the user."""
        return self.rank == 0

    def share(self, batch_size):
        """This rank's slice of a global batch of batch_size samples."""
        per_rank = batch_size // self.world
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def wrap(self, module, device):
        """DDP around the trainable module under torchrun (it averages the gradients), else the module."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)

    def mean(self, value):
        """The mean of a scalar tensor over the ranks (a float), the same on every rank."""
        value = value.detach().float().reshape(1).clone()
        if self.world > 1:
            dist.all_reduce(value)
            value /= self.world
        return value.item()

    def any(self, flag):
        """Whether any rank's flag is set: lets every rank stop at the same step."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def finish(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def start(device_name=None, batch_size=1):
    """(Ranks, torch device): joins torchrun's process group (nccl on GPUs, gloo on the CPU) when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), pick_device(device_name)
    if batch_size % world:
        raise ValueError(f"--batch-size {batch_size} does not split over {world} processes: the global batch must "
                         f"be a multiple of --nproc-per-node")
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)  # one GPU per rank
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # the gloo backend's collectives run on the CPU: the CPU tensors of Ranks.mean/any suit both
    return Ranks(rank, world), device

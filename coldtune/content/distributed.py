"""Training on many processes, GPUs or machines: torch DistributedDataParallel (DDP)
under torchrun. No cluster code of our own: torchrun starts the processes and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; this module joins the
process group they describe.

    torchrun --nproc_per_node 4 -m coldtune.cli train cnn --workspace W        # 4 GPUs
    torchrun --nnodes 2 --node_rank $NODE --master_addr host0 --master_port 29500 \\
        --nproc_per_node 8 -m coldtune.cli train cnn --workspace W              # 2 x 8 GPUs

How `train_loop` uses it, so that n processes train the one model one process would:
- every process draws the same permutation of the training songs each epoch (the same
  seeded generator) and takes its own share of each batch (`part`): batch_size is the
  global batch, as in one process;
- DDP averages the gradients over processes after each backward pass; each process
  scales its loss (the mean over its rows) by its share of the batch, so the average is
  the gradient of the whole batch's mean loss, even when the shares differ by one;
- each process draws its random windows from its own generator (seeded by seed, rank
  and epoch, so a resumed run draws the same windows again);
- validation losses are summed over processes, so every process takes the same
  early-stopping decision;
- only rank 0 writes checkpoints and artefacts (`is_main_process`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device | str | None) -> torch.device:
        """The device asked for; by default this process's GPU (LOCAL_RANK), else the CPU.
        Under DDP a bare "cuda" means this process's GPU too, not every process on GPU 0."""
        if device is not None:
            device = torch.device(device)
            if self.enabled and device.type == "cuda" and device.index is None:
                return torch.device("cuda", self.local_rank)
            return device
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank) if self.enabled else torch.device("cuda")
        return torch.device("cpu")

    def part(self, rows: np.ndarray) -> np.ndarray:
        """This process's share of `rows`: every world_size-th, from position rank."""
        return rows[self.rank :: self.world_size]

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`model` under DDP (it broadcasts rank 0's weights at once), or itself alone."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, process_group=_group_for(device))

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """The sum of `values` over all processes (float64)."""
        if not self.enabled:
            return list(values)
        on = device if device.type == "cuda" else torch.device("cpu")
        tensor = torch.tensor(values, dtype=torch.float64, device=on)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=_group_for(on))
        return tensor.tolist()

    def seed(self, *keys: int) -> int:
        """A torch seed of this process for (keys...): different ranks, different draws."""
        return int(np.random.SeedSequence([*keys, self.rank]).generate_state(1)[0])


def _group_for(device: torch.device):
    """The process group that reduces tensors on `device`: the default one, or a gloo
    group beside NCCL for a model that trains on the CPU (NCCL reduces GPU tensors only)."""
    if device.type != "cuda" and dist.get_backend() == "nccl":
        return _gloo_group()
    return None


@functools.cache
def _gloo_group():
    return dist.new_group(backend="gloo")  # every process gets here at the same point


def current() -> Distributed:
    """The process group of this process, joined on first use when torchrun started it
    (WORLD_SIZE > 1): NCCL when CUDA is present, gloo otherwise. One process otherwise."""
    if not dist.is_available():
        return Distributed()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return Distributed()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    return Distributed(rank, world_size, int(os.environ.get("LOCAL_RANK", str(rank))))


def is_main_process() -> bool:
    """Whether this process writes artefacts: rank 0, or the only process."""
    return current().is_main


def finish() -> None:
    """Leave the process group, if this process joined one (torch warns otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

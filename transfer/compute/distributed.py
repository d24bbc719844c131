"""Data-parallel training across processes (torchrun + DistributedDataParallel); one process is the plain case."""

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from transfer.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index among the processes on this machine: picks the GPU

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, saves checkpoints and writes outputs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch (or of a whole split): every world_size-th index."""
        return indices[self.rank :: self.world_size]


def ranks_from_torchrun() -> Ranks:
    """The ranks torchrun put in the environment; a single process without it."""
    return Ranks(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def relaunch_under_torchrun(nproc: int, arguments: list[str]) -> None:
    """Replace this process by torchrun starting nproc copies of `python -m stages.train <arguments>` here."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "stages.train",
        *arguments,
    ]
    sys.stdout.flush()
    os.execv(sys.executable, command)


def check_world_size(ranks: Ranks, nproc: int) -> None:
    """compute.nproc must say how many processes really run, since it is part of the result's config."""
    if ranks.world_size != nproc:
        raise UserError(
            f"compute.nproc = {nproc} but {ranks.world_size} processes were started; "
            f"set -S compute.nproc={ranks.world_size}"
        )


def start_processes(ranks: Ranks, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo on CPUs."""
    if ranks.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def stop_processes() -> None:
    """Leave the process group, if joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """value summed over all processes (itself in a single process)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
    return value

"""Data-parallel training over several processes (`torchrun`): one image per process per iteration, gradients
averaged by DistributedDataParallel, rank 0 alone logs and saves.

    torchrun --nproc_per_node=2 -m handavatar.train --config configs/synthetic/demo.yaml     # 2 GPUs, or 2 CPU procs

The backend is nccl on CUDA (one GPU per process, LOCAL_RANK) and gloo on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Distributed", "setup_distributed"]


@dataclass
class Distributed:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """The process that logs, saves and validates."""
        return self.rank == 0

    def agree(self, flag: bool) -> bool:
        """Rank 0's `flag`, on every process (a broadcast when there are several), so that all stop together."""
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.broadcast(value, 0)
        return bool(value.item())

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: torch.device) -> Distributed:
    """Join the process group that `torchrun` describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT); a plain single process when WORLD_SIZE is unset or 1.

    Args:
        device: the configured device; on CUDA each process takes the GPU of its LOCAL_RANK.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(0, 1, device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices: start at most "
                               "that many processes per node (torchrun --nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), device)

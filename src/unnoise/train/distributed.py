"""Data-parallel training on torch.distributed, launched by torchrun (or any launcher that sets the
standard RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT variables).

Every rank draws the same global batch order, training steps t and noise from the run's seeded
generators and trains on its own contiguous slice of them, so N ranks compute exactly the batch one
process would (DDP averages the gradients over equal slices: the mean over the global batch). A
checkpoint therefore holds one set of generator states, written by rank 0, and resumes on any world size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ..device import cpu, distributed_backend, is_cuda
from ..errors import UnnoiseError


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=cpu)  # this rank's device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device | None = None) -> "Distributed":
        """Join the process group torchrun describes, each rank on its local device (CUDA device
        LOCAL_RANK when `device` is CUDA; nccl there, gloo on CPU); a single process on `device` otherwise."""
        device = cpu() if device is None else torch.device(device)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=device)
        if is_cuda(device):
            device = torch.device(device.type, int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(distributed_backend(device))
        return cls(dist.get_rank(), dist.get_world_size(), device)

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        ids = [self.device.index] if is_cuda(self.device) else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def rows(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of n."""
        size = n // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (dimension 0)."""
        return x if self.world == 1 else x[self.rows(len(x))]

    def check_batch(self, global_batch: int, accumulation: int) -> None:
        if global_batch % (self.world * accumulation):
            raise UnnoiseError(f"train.batch_size {global_batch} must divide into {self.world} ranks x "
                               f"{accumulation} accumulation steps")

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over ranks (every rank must call it)."""
        if self.world == 1:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenation over ranks, in rank order, of equal-sized tensors (every rank must call it)."""
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

"""Training under torchrun: which process this is, the process group, each rank's share of a batch, reductions.

torchrun (`python -m torch.distributed.run`) starts one process per rank with RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE and the rendezvous' MASTER_ADDR/MASTER_PORT in the environment; `World.from_environment()` reads
them, and a plain process is the world of one (`SINGLE`), for which every helper here is the identity. The loop's
data order is a pure function of (seed, epoch), so sharding a global batch is a slice: rank r takes every size-th
row of it (`shard`). Gradients are averaged by DDP; metrics are reduced here, so every rank takes the same
early-stopping decision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch

PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)  # a rank waits this long for the others (rank 0 writing a report)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (a plain process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, the report, the package and the store."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> World:
        """The world torchrun describes in the environment; a plain process is `SINGLE`."""
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            return SINGLE
        size = int(os.environ["WORLD_SIZE"])
        return cls(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   local_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


SINGLE = World()


def restart_count() -> int:
    """How many times torchrun has restarted this group after a failure (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def job_id() -> str:
    """The rendezvous id every rank and every restart of one torchrun job shares (`--rdzv-id`; `--standalone`
    makes a random one)."""
    return os.environ.get("TORCHELASTIC_RUN_ID", "none")


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU) and return this rank's device (`cuda:<local rank>`)."""
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return device
    # The rendezvous store outlives a restart, and gloo ranks of a restarted group read the dead group's addresses
    # from it (measured: 'connectFullMesh ... Connection refused' or a hang in about half the restarts), so each
    # attempt keeps its keys under its own prefix.
    store = dist.PrefixStore(f"luodi/attempt-{restart_count()}", dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world.size,
        is_master=world.main and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True",
        timeout=PROCESS_GROUP_TIMEOUT))
    if device.type == "cuda":  # bound to its GPU: NCCL connects eagerly and collectives know their device
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", store=store, rank=world.rank, world_size=world.size,
                                timeout=PROCESS_GROUP_TIMEOUT, device_id=device)
    else:
        dist.init_process_group("gloo", store=store, rank=world.rank, world_size=world.size,
                                timeout=PROCESS_GROUP_TIMEOUT)
    return device


def stop(world: World) -> None:
    """Leave the process group (torchrun's restart starts a new one)."""
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(index: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's rows of a global batch: every `size`-th row from `rank` (sizes differ by at most one)."""
    return index[world.rank::world.size] if world.distributed else index


def chunk(rows: int, world: World) -> slice:
    """This rank's contiguous block of `rows` (validation is split so that gathering in rank order restores it)."""
    return slice(rows * world.rank // world.size, rows * (world.rank + 1) // world.size)


def all_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sums over all ranks, in float64 (on the process group's device)."""
    if not world.distributed:
        return values
    import torch.distributed as dist

    device = torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(value) for value in tensor.cpu().tolist()]


def gather(value: Any, world: World) -> list[Any]:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if not world.distributed:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def gather_rows(array: np.ndarray, world: World) -> np.ndarray:
    """Concatenate each rank's block of rows (`chunk`) in rank order: the whole array, on every rank."""
    return array if not world.distributed else np.concatenate(gather(array, world))


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The model that training steps call: DDP around it across ranks (gradients averaged in backward), else itself.
    Its parameters are the model's own, so checkpoints and the package read the unwrapped model."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def threads_per_rank(world: World) -> tuple[int, str]:
    """The node's usable cores shared by its ranks: torchrun leaves threads alone with one process per node, and
    two ranks that each take every core oversubscribe them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // world.local_size), f"auto: {cores} usable cores / {world.local_size} ranks on this node"

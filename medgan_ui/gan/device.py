"""Device choice (the one chooser: pick_device), mixed precision and the torch.distributed set-up the engine shares with the CLI.

DDP note: GAN steps run several forward/backward passes per step (critic, gradient penalty with a
double backward, generator) and freeze some nets (GDGAN's D1 in stage 2). DistributedDataParallel's
reducer is built for one forward + one backward per step and does not support the double backward
of the gradient penalty, so instead of wrapping nets we average gradients across ranks right
before each optimiser step (one flattened all-reduce per optimiser). The numbers are the same as
DDP's (mean of per-rank gradients) and every model family works unchanged.
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from medgan_ui.errors import UserError


def pick_device(name: str | None = "auto") -> torch.device:
    """'auto' -> CUDA, then MPS, then CPU; an explicit name must be available."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available here; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device 'mps' asked for but MPS is not available here; use --device auto or cpu")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return torch.device(name)


def describe_device() -> str:
    """'NVIDIA H100 80GB HBM3 (79.1 GiB)' or 'CPU (2 cores)': what training will run on."""
    dev = pick_device("auto")
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        return f"GPU: {props.name} ({props.total_memory / 2**30:.1f} GiB)"
    if dev.type == "mps":
        return "GPU: Apple MPS"
    bf16 = ", bf16" if cpu_has_native_bf16() else ""
    return f"CPU ({os.cpu_count() or 1} cores{bf16}; no GPU found, so use a small preset such as fast-cpu)"


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run in hardware, about twice fp32's speed for the big FC
    layers of GDGAN (bench/cpu_bf16_step.py). Elsewhere CPU bf16 is emulated and slower than fp32."""
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        if any(p is not None and p() for p in probes):
            return True
    except Exception:  # private probes: fall back to the kernel's flags
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


@functools.lru_cache(maxsize=None)
def cuda_has_native_bf16() -> bool:
    """Ampere and newer; older GPUs (V100, T4) would emulate bf16, slower than fp32."""
    try:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    except (RuntimeError, TypeError, AssertionError):
        return False


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """bf16 where the hardware computes it natively (Ampere+ GPUs; CPUs with AVX512-BF16/AMX), else
    None (fp32). MPS autocast is partial, so MPS stays fp32."""
    if not enabled:
        return None
    if (device.type == "cuda" and cuda_has_native_bf16()) or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed precision for a training step (see amp_dtype); a no-op where it would not help."""
    dtype = amp_dtype(device, enabled)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(device: torch.device, enabled: bool = True) -> str:
    return "bf16 autocast" if amp_dtype(device, enabled) is not None else "fp32"


def uses_channels_last(device: torch.device) -> bool:
    return device.type == "cuda"


@dataclass
class Dist:
    """This process's place in a torchrun job (world 1 when run plainly)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str | None = "auto") -> tuple[Dist, torch.device]:
    """Read torchrun's env; start a process group (NCCL on GPU, Gloo on CPU) if WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), pick_device(device_name)
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if device.type == "mps":
        raise UserError("multi-process training on MPS is not supported; run on CPU or CUDA under torchrun")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, local_rank, world), device


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights and buffers."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def average_gradients_before_step(optimizer: torch.optim.Optimizer, world: int) -> None:
    """Patch optimizer.step so it first averages this optimiser's gradients over all ranks."""
    original = optimizer.step

    def step(*args, **kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1).float() for g in grads])
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for g in grads:
                n = g.numel()
                g.copy_(flat[offset:offset + n].view_as(g))
                offset += n
        return original(*args, **kwargs)

    optimizer.step = step  # type: ignore[method-assign]


@contextlib.contextmanager
def fork_rng(device: torch.device) -> Iterator[None]:
    """Sample grids must not move the training RNG, or resume would diverge from a straight run."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield

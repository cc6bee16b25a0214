"""Device selection and honest timing (CUDA kernels are asynchronous, so phases synchronize before reading clocks)."""
from __future__ import annotations

import platform

import torch

from .errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was requested but no CUDA device is visible; use device=auto or device=cpu.")
    if spec not in ("cpu", "cuda") and not spec.startswith("cuda:"):
        raise ConfigError(f"unknown device {spec!r}. Valid choices: auto, cpu, cuda (or cuda:N).")
    return torch.device(spec)


def configure_torch(threads: int | None, seed: int, deterministic: bool) -> None:
    """Process-wide torch settings of a run: CPU threads, the seed, and deterministic kernels (ops with a
    nondeterministic parallel reduction, e.g. CUDA index_add/scatter in graph hypernetworks, switch to an ordered
    one; hypernet rankings at small budgets move with float-level differences, so repeats must be exact)."""
    import os

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode needs it
    # warn_only: an op without a deterministic kernel warns instead of failing the run
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

"""Device selection and honest timing (CUDA kernels are asynchronous, so phases synchronize before reading clocks)."""
from __future__ import annotations

import os
import platform
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Optional

import torch

from .errors import ConfigError

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present on a machine with NVIDIA GPUs, whatever is visible


def gpus_hidden_by_launcher() -> bool:
    """CUDA_VISIBLE_DEVICES is set but empty on a machine with an NVIDIA driver: a launcher gave this process no GPU
    (submitit's local executor does so for every job when `gpus_per_node` is unset)."""
    return os.environ.get("CUDA_VISIBLE_DEVICES") == "" and NVIDIA_DRIVER.exists()


HIDDEN_FIX = ("CUDA_VISIBLE_DEVICES is empty on a machine with NVIDIA GPUs, so the launcher gave this job none: set "
              "hydra.launcher.gpus_per_node=<n> (submitit), or device=cpu to run on CPU on purpose")


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec not in ("cpu", "cuda") and not (spec.startswith("cuda:") and spec[5:].isdigit()):
        raise ConfigError(f"unknown device {spec!r}. Valid choices: auto, cpu, cuda (or cuda:N).")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        hint = HIDDEN_FIX if gpus_hidden_by_launcher() else "use device=auto or device=cpu"
        raise ConfigError(f"device={spec} was requested but no CUDA device is visible; {hint}.")
    if spec.startswith("cuda:") and int(spec[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device={spec}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
    return torch.device(spec)


def device_for_job(spec: str, job_num: Optional[int]) -> str:
    """The device of job `job_num` of a multirun (None: not in one). Jobs that asked for a GPU (auto or cuda) take
    GPU `job_num mod visible GPUs`: submitit's local executor gives every job the same GPUs, and a SLURM job sees
    only its own, so each job lands on one GPU either way. device=auto in a job whose launcher hid the machine's
    GPUs fails instead of silently running on CPU."""
    if job_num is None or spec == "cpu" or spec.startswith("cuda:"):
        return spec
    if spec == "auto" and gpus_hidden_by_launcher():
        raise ConfigError(f"device=auto in job {job_num}: {HIDDEN_FIX}.")
    count = torch.cuda.device_count()
    if count == 0:
        return spec  # auto runs on CPU (a CPU machine); cuda fails in resolve_device, naming the fix
    return f"cuda:{job_num % count}"


def configure_torch(threads: int | None, seed: int, deterministic: bool) -> None:
    """Process-wide torch settings of a run: CPU threads, the seed, and deterministic kernels (ops with a
    nondeterministic parallel reduction, e.g. CUDA index_add/scatter in graph hypernetworks, switch to an ordered
    one; hypernet rankings at small budgets move with float-level differences, so repeats must be exact). Without
    determinism, cuDNN autotunes its convolution algorithms (`cudnn.benchmark`): faster on a GPU for fixed shapes,
    but the chosen algorithm, hence the last bits of every result, can change between runs."""
    import os

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode needs it
    # warn_only: an op without a deterministic kernel warns instead of failing the run
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def search_autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The arithmetic of a run's search phases (training, scoring, derive, Top-Best's short training): bf16 autocast
    on the run's device type (fp32 master weights; backward steps run outside it, oneshot_bench.training), or
    plain fp32. Ground truth and the final training are never under it: they are the evaluator's, the same for
    every run."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=str(precision) == "bf16")


def host_to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor (drawn from a CPU generator: indices, augmentation offsets, gates) on `device`, without a host
    sync: a copy from pageable memory to CUDA waits for the device, one from pinned memory is queued (the caching
    host allocator keeps the pinned block until the copy is done). On the CPU, the tensor itself."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def full_precision(device: torch.device) -> AbstractContextManager:
    """fp32 inside a search_autocast region (ground truth trained while a search phase asks for it)."""
    return torch.autocast(device.type, enabled=False)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

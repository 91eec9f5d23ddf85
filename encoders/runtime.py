"""Device and precision, chosen once at the command line and passed down."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible; use --device cpu")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """AMX-BF16: bf16 convolutions and matmuls run on tile units. AVX512-BF16 alone is not
    enough: on an AMD EPYC with it but no AMX, bf16 autocast ran a smallcnn SimCLR step
    slower than fp32 (docs/methods.md, Automatic defaults)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def pick_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        if name not in ("bf16", "fp32"):
            raise ValueError(f"--precision {name}: choose auto, bf16 or fp32")
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

"""What a bench's wall times depend on, for its JSON: the CPU, its cores and the load before the run."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_line() -> str:
    """E.g. "AMD EPYC, 2 cores, load average at start 0.9"."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.processor() or platform.machine())
    return f"{model}, {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}"

"""What a benchmark ran on: CPU model and ISA flags, cores, memory, OS, package versions, load, thread settings.

Recorded in every ``pruneport bench`` result and by the scripts in ``benchmarks/`` (numbers without the machine mean
little). Read from ``/proc`` and the standard library; written by hand because no installed library reports this set
(``platform`` alone gives no CPU model on Linux). Torch-free.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

VERSIONED_PACKAGES = ("pruneport", "onnxruntime", "openvino", "torch", "transformers", "numpy", "onnx", "nncf")
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def cpu_info() -> dict[str, Any]:
    """The CPU model name and the ISA flags that matter for INT8/BF16 kernels (``isa``)."""
    info: dict[str, Any] = {"cpu": platform.processor() or "unknown"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    info["isa"] = [f for f in ISA_FLAGS if f in flags]
    return info


def package_versions() -> dict[str, str]:
    """Installed versions of the packages whose speed the numbers depend on (absent ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the logical CPU count."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return int(count or 1)


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the OS has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, OS, versions, load, thread settings."""
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        **cpu_info(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_gib": mem_total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "intra_op_threads": threads,
        "ort_allow_spinning": False,
        "openvino_hint": "LATENCY, INFERENCE_PRECISION_HINT f32",
        "torch_threads": threads,
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "load_average_start": load_average(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

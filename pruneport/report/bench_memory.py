"""Peak memory of one benchmark system, measured in a fresh Python process.

``pruneport bench`` keeps every system loaded at once (to interleave them), so the benchmark process's own peak
says nothing about one model. :func:`probe_memory` starts ``python -m pruneport.report.bench_memory SPEC``, which
opens only that system (ONNX Runtime / OpenVINO through pruneport's torch-free runtime, or transformers for PyTorch
eager), then for each batch size resets the peak (``echo 5 > /proc/self/clear_refs``, Linux) and runs the widest
batches of that size twice; the peak resident set (``VmHWM`` in ``/proc/self/status``) is that batch size's
``peak_rss_mb``. It includes the interpreter and the runtime libraries, as a deployed process would. Linux only;
elsewhere the value is null.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 600


def vm_hwm_mb() -> float | None:
    """The process's peak resident set size in MiB (VmHWM), or None where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def probe_memory(
    spec: dict[str, Any], feeds_by_batch: dict[int, list[dict[str, np.ndarray]]], threads: int, work: Path
) -> dict[int, float | None]:
    """Peak RSS (MiB) per batch size of the system ``spec`` (see ``System.spec``) in a fresh process."""
    if not Path("/proc/self/status").exists():
        return {b: None for b in feeds_by_batch}
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mem-", dir=work) as tmp:
        arrays = {}
        for batch_size, feeds_list in feeds_by_batch.items():
            for j, feeds in enumerate(feeds_list):
                for name, value in feeds.items():
                    arrays[f"{batch_size}:{j}:{name}"] = value
        np.savez(Path(tmp) / "feeds.npz", **arrays)
        job = {"spec": spec, "threads": threads, "feeds": str(Path(tmp) / "feeds.npz")}
        (Path(tmp) / "job.json").write_text(json.dumps(job), encoding="utf-8")
        cmd = [sys.executable, "-m", "pruneport.report.bench_memory", str(Path(tmp) / "job.json")]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            log.warning("memory probe of %s timed out", spec)
            return {b: None for b in feeds_by_batch}
    if done.returncode != 0:
        log.warning("memory probe of %s failed: %s", spec, done.stderr.strip().splitlines()[-1:] or "")
        return {b: None for b in feeds_by_batch}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {int(b): v for b, v in result.items()}


def _open(spec: dict[str, Any], threads: int):
    from pruneport.report.bench_systems import eager_system, folder_system

    if spec["kind"] == "eager":
        return eager_system(Path(spec["folder"]), Path(spec["plain"]), threads, "")
    return folder_system(Path(spec["folder"]), spec["backend"], threads, device=spec.get("device", "cpu"))


def main(argv: list[str] | None = None) -> int:
    """Child side: open the system, run each batch size's feeds, print ``{batch_size: peak MiB}`` as JSON."""
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    system = _open(job["spec"], int(job["threads"]))
    stored = np.load(job["feeds"])
    grouped: dict[int, dict[int, dict[str, np.ndarray]]] = {}
    for key in stored.files:
        batch_size, j, name = key.split(":", 2)
        grouped.setdefault(int(batch_size), {}).setdefault(int(j), {})[name] = stored[key]
    peaks: dict[int, float | None] = {}
    for batch_size in sorted(grouped):
        can_reset = reset_peak()
        for _ in range(2):
            for feeds in grouped[batch_size].values():
                system.run(feeds)
        peaks[batch_size] = vm_hwm_mb() if can_reset or len(grouped) == 1 else None
    print(json.dumps(peaks))
    return 0


if __name__ == "__main__":
    sys.exit(main())

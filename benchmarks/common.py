"""Helpers shared by the benchmark scripts: machine description, timing, synthetic texts, markdown tables.

The scripts import this as ``from common import ...`` (a script's own folder is first on ``sys.path``).
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch

WORDS = (
    "the study reports that protein levels in patients increase after treatment with the new drug while the "
    "control group shows no effect on disease progression over two years of weather data from the city river "
    "basin where rain and summer heat change how water moves through soil cells and tree roots into the sea "
    "a team of researchers measured gene expression in mice and found that a small molecule blocks the signal "
    "that drives tumour growth which suggests a target for therapy although larger trials are still needed"
).split()


def machine_info(device: torch.device) -> dict:
    """What ran the numbers: recorded next to every figure."""
    info = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "device": str(device),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cpu" and os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[int], object], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``fn(i)`` per call, synchronising the device around each (end-to-end latency)."""
    for i in range(warmup):
        fn(i)
    synchronize(device)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(warmup + i)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median_ms(times: Sequence[float]) -> float:
    return 1000 * statistics.median(times)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """Peak GPU memory allocated by torch since the last reset; on the CPU, the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def text_of_tokens(tokenizer, n_tokens: int, seed: int) -> str:
    """A text of about ``n_tokens`` tokens (without special tokens), different for each seed."""
    start = (seed * 7) % len(WORDS)
    words = [WORDS[(start + i) % len(WORDS)] for i in range(4 * n_tokens)]
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids).strip()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)

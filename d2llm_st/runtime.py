"""How d2llm uses the CPU: the backbone dtype policy and the thread count, in one place.

**dtype.** On a CPU with bf16 matrix instructions (AMX or avx512_bf16, as torch reports them), LLM backbones
(student and teacher) hold their frozen weights in bfloat16: matrix work runs 2-6x faster than in float32
and the weights take half the memory. Trainable weights (LoRA, PMA, IEM) stay float32, and training runs the
backbone under bf16 autocast, so optimizer updates are not lost to bf16 rounding. CPUs without bf16 keep
float32, and GPUs keep their own behaviour (float32 students, bf16 teachers where supported, the trainer's
``bf16``/``fp16`` flags). ``D2LLM_CPU_DTYPE=float32`` (or ``d2llm --cpu-dtype float32``) forces float32;
``bfloat16`` forces bf16 even where torch reports no bf16 instructions (slow there, for testing).

**threads.** ``D2LLM_NUM_THREADS`` (or ``d2llm --threads N``) sets torch's intra-op threads. Without it the
CLI uses ``OMP_NUM_THREADS`` if set, else the cores this process may run on minus the cores other processes
keep busy right now, at least one: a second job started beside a running one takes the free core instead of
fighting for both (two 2-thread jobs on 2 cores run several times slower than one).
"""

from __future__ import annotations

import logging
import os
import time

import torch

from d2llm_st.errors import UserError

logger = logging.getLogger(__name__)

DTYPE_ENV = "D2LLM_CPU_DTYPE"
THREADS_ENV = "D2LLM_NUM_THREADS"
CPU_DTYPES = ("auto", "bfloat16", "float32")


def cpu_has_bf16() -> bool:
    """Whether torch reports bf16 matrix instructions on this CPU (AMX tiles or avx512_bf16)."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


class DeliberateCPUBf16Filter(logging.Filter):
    """Drops sentence-transformers' "loaded in torch.bfloat16 on CPU ... may be slower" warning on CPUs with
    bf16 instructions: there the policy chose bf16 because it is faster (docs/cpu.md), so the advice misleads."""

    message_start = "This model was loaded in torch.bfloat16 on CPU"

    def filter(self, record: logging.LogRecord) -> bool:
        return not (str(record.msg).startswith(self.message_start) and cpu_has_bf16())


def quiet_deliberate_bf16_warning() -> None:
    """Install :class:`DeliberateCPUBf16Filter` on sentence-transformers' model logger (once)."""
    st_logger = logging.getLogger("sentence_transformers.base.model")
    if not any(isinstance(existing, DeliberateCPUBf16Filter) for existing in st_logger.filters):
        st_logger.addFilter(DeliberateCPUBf16Filter())


def cpu_dtype_setting() -> str:
    """The ``D2LLM_CPU_DTYPE`` setting (``auto`` when unset), checked."""
    setting = os.environ.get(DTYPE_ENV, "auto").strip().lower() or "auto"
    if setting not in CPU_DTYPES:
        raise UserError(f"{DTYPE_ENV}={setting!r} is not one of {', '.join(CPU_DTYPES)}.")
    return setting


def cpu_dtype() -> torch.dtype:
    """The dtype of LLM backbone weights on the CPU under the current policy."""
    setting = cpu_dtype_setting()
    if setting == "auto":
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return getattr(torch, setting)


def default_device() -> str:
    """The device a model lands on when none is given (sentence-transformers' choice)."""
    from sentence_transformers.util import get_device_name

    return get_device_name()


def backbone_dtype(device: str | torch.device | None = None) -> torch.dtype | None:
    """The dtype to load an LLM backbone in for ``device`` (default: where it will run), or ``None`` to keep
    the checkpoint's own dtype (every non-CPU device: GPU behaviour is unchanged)."""
    device_type = torch.device(device if device is not None else default_device()).type
    return cpu_dtype() if device_type == "cpu" else None


def busy_cores(interval: float = 0.2) -> float:
    """How many cores other processes keep busy now, from two ``/proc/stat`` samples (0 where unreadable)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total_a, idle_a = sample()
        time.sleep(interval)
        total_b, idle_b = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    elapsed = total_b - total_a
    if elapsed <= 0:
        return 0.0
    return (1 - (idle_b - idle_a) / elapsed) * (os.cpu_count() or 1)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_num_threads() -> tuple[int, str]:
    """The thread count to use and why (see the module docstring)."""
    if os.environ.get(THREADS_ENV):
        value = os.environ[THREADS_ENV]
        if not value.isdigit() or int(value) < 1:
            raise UserError(f"{THREADS_ENV}={value!r} must be a whole number >= 1.")
        return int(value), THREADS_ENV
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    cores = usable_cores()
    busy = busy_cores()
    return max(1, min(cores, round(cores - busy))), f"{cores} cores, {busy:.1f} busy with other work"


def configure_cpu(threads: int | None = None) -> str:
    """Set torch's thread count (``threads`` or :func:`default_num_threads`) and describe the CPU setup.

    Returns:
        One line for the log, e.g. ``"CPU: 2 threads (2 cores, 0.1 busy ...); backbone dtype bfloat16 (...)"``.
    """
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}.")
        reason = "--threads"
    else:
        threads, reason = default_num_threads()
    torch.set_num_threads(threads)
    dtype = str(cpu_dtype()).removeprefix("torch.")
    setting = cpu_dtype_setting()
    why = (
        f"{DTYPE_ENV}={setting}"
        if setting != "auto"
        else ("CPU has bf16 instructions" if cpu_has_bf16() else "no bf16 instructions on this CPU")
    )
    return f"CPU: {threads} torch threads ({reason}); LLM backbones in {dtype} on the CPU ({why})"

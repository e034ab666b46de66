"""Several processes started by ``torchrun`` or ``accelerate launch``: who am I, talk to the others, never hang.

d2llm manages no processes itself. The launchers start one process per GPU (or per CPU slot) and tell each
one its place in environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``); :func:`setup` reads them, joins (or reuses) the process group, and returns a
:class:`Distributed` whose methods are the few collectives the sharded stages need. Without those variables
(``WORLD_SIZE`` unset or 1) it returns a single-process :class:`Distributed` whose collectives do nothing,
so every stage has one code path.

All of this module's collectives run on a gloo group, also when the default group is NCCL: they carry small
Python objects (decisions, digests, scores), work the same on CPU and GPU, and gloo's ``monitored_barrier``
names the ranks that did not arrive. Every wait is bounded by ``timeout`` (``D2LLM_DIST_TIMEOUT`` seconds,
default 1800, or ``d2llm --dist-timeout``): a stage waits at its end for the slowest rank, so the timeout must
cover the difference between the fastest and the slowest one. A rank that dies makes the others fail at once
(``torchrun`` and ``accelerate launch`` also stop them); one that is stuck makes them fail after the timeout,
with a :class:`DistributedError` naming the step and the ranks.

Sharding is by position: :func:`shard` gives rank ``r`` items ``r, r + N, r + 2N, ...`` of a list that every
rank builds the same way (:meth:`Distributed.check_same` verifies that). The stages that write results
(:func:`d2llm_st.teacher.sharded.score_sharded`, :func:`d2llm_st.corpus.encode_corpus`) keep them in a folder
that every rank must see (:meth:`Distributed.check_shared_folder`).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from d2llm_st.errors import USER_ERRORS, UserError

logger = logging.getLogger(__name__)

T = TypeVar("T")

TIMEOUT_ENV = "D2LLM_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SHARED_CHECK_FILE = ".d2llm-shared-check"


class DistributedError(UserError):
    """Processes that cannot work together (launch variables, a rank that died or is stuck, an unshared folder).

    A :class:`UserError`, so the CLI prints it as one line and exits with status 2 on every rank that raises it.
    """


def timeout_seconds(timeout: float | None = None) -> float:
    """``timeout``, else ``D2LLM_DIST_TIMEOUT``, else :data:`DEFAULT_TIMEOUT` (checked)."""
    if timeout is None:
        value = os.environ.get(TIMEOUT_ENV, "").strip()
        if not value:
            return DEFAULT_TIMEOUT
        try:
            timeout = float(value)
        except ValueError:
            raise UserError(f"{TIMEOUT_ENV}={value!r} must be a number of seconds.") from None
    if not timeout > 0:
        raise UserError(f"The distributed timeout must be > 0 seconds, got {timeout}.")
    return float(timeout)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise DistributedError(f"{name}={value!r} must be a whole number >= 0 (set by torchrun / accelerate launch).")
    return int(value)


def launch_environment() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the launcher's variables; ``(0, 1, 0)`` when not launched.

    Raises:
        DistributedError: ``WORLD_SIZE`` > 1 without the other variables, or values that contradict each other.
    """
    world_size = _env_int("WORLD_SIZE")
    if world_size is None or world_size == 1:
        return 0, 1, 0
    if world_size == 0:
        raise DistributedError("WORLD_SIZE=0: there must be at least one process.")
    missing = [name for name in LAUNCH_VARIABLES if not os.environ.get(name, "").strip()]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: start "
            "the command with torchrun or accelerate launch (docs/scaling.md), or unset WORLD_SIZE to run in one "
            "process."
        )
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank >= world_size:
        raise DistributedError(f"RANK={rank} is not below WORLD_SIZE={world_size}: the launch variables disagree.")
    if local_rank > rank:
        raise DistributedError(f"LOCAL_RANK={local_rank} is above RANK={rank}: the launch variables disagree.")
    return rank, world_size, local_rank


def launched() -> bool:
    """Whether this process is one of several (``WORLD_SIZE`` > 1)."""
    return launch_environment()[1] > 1


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: positions ``rank, rank + world_size, ...`` (disjoint, all covered)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} process(es).")
    return list(items[rank::world_size])


def digest(parts: Sequence[str | bytes]) -> str:
    """A short hash of a sequence of strings / bytes (length-prefixed, so the split between parts counts)."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.hexdigest()[:16]


def select_device(local_rank: int, world_size: int) -> str:
    """The device of the process with ``local_rank``: ``cuda:<local_rank>`` with CUDA, else ``cpu``.

    Raises:
        DistributedError: more processes on this node than GPUs (a wrong ``--nproc_per_node``).
    """
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise DistributedError(
            f"LOCAL_RANK={local_rank} but this node has {count} GPU(s): start at most {count} process(es) per node "
            f"(torchrun --nproc_per_node {count}, accelerate launch --num_processes {count} x nodes)."
        )
    return f"cuda:{local_rank}" if world_size > 1 else "cuda"


class Distributed:
    """This process's place among ``world_size`` processes, and the collectives the sharded stages use.

    Build it with :func:`setup`. With ``world_size == 1`` every collective returns at once.

    Attributes:
        rank: This process, ``0 .. world_size - 1``; rank 0 (:attr:`is_main`) writes the merged results.
        world_size: How many processes take part.
        local_rank: This process on its node (its GPU index).
        device: ``cuda:<local_rank>`` or ``cpu``: where this process puts its models.
        timeout: Seconds any collective waits for the other ranks.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
        device: str = "cpu",
        timeout: float = DEFAULT_TIMEOUT,
        group: Any = None,
    ) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device, self.timeout, self._group = device, timeout, group
        self.host = socket.gethostname()

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size}, device={self.device!r})"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items`` (see :func:`shard`)."""
        return shard(items, self.rank, self.world_size)

    def _collective(self, step: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except RuntimeError as error:  # gloo: a peer died (connection reset / closed) or timed out
            text = " ".join(str(error).split())
            raise DistributedError(
                f"rank {self.rank} of {self.world_size} failed at '{step}' ({text[:300]}). Another process died or "
                f"is stuck (a wait lasts at most {self.timeout:g} s): read its log. If the processes are only slow "
                f"(each stage ends waiting for the slowest one), raise {TIMEOUT_ENV} or d2llm --dist-timeout."
            ) from error

    def barrier(self, step: str) -> None:
        """Wait until every rank reaches ``step``; name the ranks that did not within the timeout."""
        if not self.is_distributed:
            return
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=self.timeout)
        self._collective(step, lambda: dist.monitored_barrier(self._group, timeout=timeout, wait_all_ranks=True))

    def broadcast(self, value: Any, step: str) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if not self.is_distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        self._collective(step, lambda: dist.broadcast_object_list(box, src=0, group=self._group))
        return box[0]

    def all_gather(self, value: Any, step: str) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.is_distributed:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        self._collective(step, lambda: dist.all_gather_object(gathered, value, group=self._group))
        return gathered

    def on_main(self, step: str, function: Callable[[], T]) -> T:
        """Run ``function`` on rank 0 only and give its result to every rank.

        A user error raised on rank 0 (:data:`d2llm_st.errors.USER_ERRORS`) is raised on every rank with the same
        message, so no rank is left waiting for rank 0 at the next collective.
        """
        result, message = None, None
        if self.is_main:
            try:
                result = function()
            except USER_ERRORS as error:
                if not self.is_distributed:
                    raise
                message = str(error)
        result, message = self.broadcast((result, message), step)
        if message is not None:
            raise UserError(message)
        return result

    def check_same(self, value: str, what: str, fix: str) -> None:
        """Raise on every rank unless all ranks hold the same ``value`` (a digest of ``what``)."""
        values = self.all_gather(value, f"compare {what}")
        differ = [rank for rank, other in enumerate(values) if other != values[0]]
        if differ:
            raise DistributedError(
                f"The processes do not agree on {what}: rank(s) {', '.join(map(str, differ))} differ from rank 0. "
                + fix
            )

    def check_shared_folder(self, folder: str, what: str) -> None:
        """Raise on every rank unless ``folder`` is one folder that all ranks see (rank 0 writes, all read).

        Results from all ranks are merged through this folder, so a path that is node-local (``/tmp``) or relative to
        a different working directory on some ranks would silently split them.
        """
        if not self.is_distributed:
            return
        path = os.path.join(folder, SHARED_CHECK_FILE)

        def write_token() -> str:
            os.makedirs(folder, exist_ok=True)
            token = secrets.token_hex(16)
            with open(path, "w", encoding="ascii") as f:
                f.write(token)
            return token

        token = self.on_main(f"create {what}", write_token)
        try:
            with open(path, encoding="ascii") as f:
                sees = f.read().strip() == token
        except OSError:
            sees = False
        views = self.all_gather((sees, self.host, os.path.abspath(folder)), f"check that every rank sees {what}")
        if self.is_main:
            os.remove(path)
        blind = [f"rank {rank} on {host} ({seen})" for rank, (ok, host, seen) in enumerate(views) if not ok]
        if blind:
            raise DistributedError(
                f"{what} {folder} is not one folder shared by all processes: rank 0 on {views[0][1]} wrote to "
                f"{views[0][2]}, which {', '.join(blind)} cannot see. Put it on a filesystem that every node mounts "
                "at the same path (NFS, Lustre, a cloud file share), and give an absolute path."
            )


_CREATED = False
_CURRENT: Distributed | None = None


def setup(timeout: float | None = None) -> Distributed:
    """Join the process group the launcher set up (or reuse an initialised one) and describe this process.

    Initialises ``torch.distributed`` with NCCL when CUDA is available (else gloo) from the launcher's variables,
    if no process group exists yet (one made by accelerate or the Trainer is reused), and adds a gloo group with
    ``timeout`` for this module's collectives. Without launch variables, returns a single-process
    :class:`Distributed` and initialises nothing.

    Raises:
        DistributedError: launch variables missing or inconsistent, more processes than GPUs on a node, or not all
            ``WORLD_SIZE`` processes joined within the timeout.
    """
    global _CREATED, _CURRENT
    seconds = timeout_seconds(timeout)
    rank, world_size, local_rank = launch_environment()
    device = select_device(local_rank, world_size)
    if world_size == 1:
        return Distributed(device=device, timeout=seconds)
    import torch
    import torch.distributed as dist

    if _CURRENT is not None and dist.is_initialized() and _CURRENT.timeout == seconds:
        return _CURRENT  # set up before in this process

    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    delta = datetime.timedelta(seconds=seconds)
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        try:
            dist.init_process_group(backend, timeout=delta)
        except RuntimeError as error:
            raise DistributedError(
                f"rank {rank}: not all WORLD_SIZE={world_size} processes joined at "
                f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within {seconds:g} s ({error}). Check that "
                "every node runs the same launch command with the same --nnodes / --nproc_per_node / rendezvous "
                "address, or unset WORLD_SIZE to run in one process."
            ) from error
        _CREATED = True
    elif dist.get_world_size() != world_size or dist.get_rank() != rank:
        raise DistributedError(
            f"The process group has {dist.get_world_size()} processes (this is rank {dist.get_rank()}) but the "
            f"launch variables say WORLD_SIZE={world_size}, RANK={rank}."
        )
    # Our own gloo group: the default one may be NCCL, or have another timeout (one made by accelerate).
    group = dist.new_group(backend="gloo", timeout=delta)
    _CURRENT = Distributed(rank, world_size, local_rank, device, seconds, group)
    return _CURRENT


def teardown() -> None:
    """Destroy the process group if :func:`setup` created it (leave one made by accelerate or the Trainer)."""
    global _CREATED, _CURRENT
    _CURRENT = None
    if _CREATED:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        _CREATED = False

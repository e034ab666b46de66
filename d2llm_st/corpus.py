"""Passage embeddings of a whole corpus, written once for an index by any number of processes, and read back.

:func:`encode_corpus` (``d2llm encode``) writes a folder:

- ``manifest.json``: what was encoded (the model's fingerprint, the role and its prompt, a digest of the corpus,
  the passage count, the shard size, the embedding size) and whether every shard is there (``"complete"``);
- ``shard-00000.safetensors``, ...: shard ``i`` holds the embeddings (``float32 [n, dim]``, tensor
  ``"embeddings"``) of passages ``i * shard_size`` up to ``(i + 1) * shard_size`` in corpus order, and their ids
  (metadata ``"ids"``, a JSON list).

Under ``torchrun`` / ``accelerate launch`` rank ``r`` of ``N`` encodes shards ``r, r + N, ...``
(:func:`d2llm_st.distributed.shard`), so the ranks never write the same file. A shard is written to a temporary file
and renamed when complete: a killed run loses at most the shards being encoded, and running the same command again,
with any number of processes, encodes only the missing ones. Rank 0 checks a folder left by an earlier run (same
model, corpus and settings, else an error saying so) and marks the folder complete at the end.

:func:`iter_corpus_embeddings` / :func:`load_corpus_embeddings` read it back;
:func:`d2llm_llamaindex.corpus.index_from_embeddings` loads it into any LlamaIndex vector store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from d2llm_st.distributed import Distributed
from d2llm_st.errors import UserError

if TYPE_CHECKING:
    from d2llm_st.model import D2LLM

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "d2llm-corpus-embeddings"
VERSION = 1
SHARD_PATTERN = "shard-{:05d}.safetensors"
DEFAULT_SHARD_SIZE = 10_000
RESUME_FIELDS = ("format", "version", "model_fingerprint", "role", "corpus_digest", "num_passages", "shard_size")
"""What a re-run must share with the folder it resumes."""


@dataclass
class CorpusScan:
    """One streaming pass over a corpus: its size, a digest of its ids and texts, and the passages kept."""

    count: int
    digest: str
    kept: dict[int, tuple[str, str]]


def scan_corpus(corpus: str, keep: Callable[[int], bool] = lambda position: False) -> CorpusScan:
    """Read ``corpus`` once (:func:`d2llm_st.data.readers.iter_corpus`), keeping the passages whose position ``keep``
    accepts; ids must be unique."""
    from d2llm_st.data.readers import iter_corpus

    hasher = hashlib.sha256()
    seen: set[str] = set()
    kept: dict[int, tuple[str, str]] = {}
    count = 0
    for count, (key, text) in enumerate(iter_corpus(corpus), start=1):
        if key in seen:
            raise UserError(f"{corpus}: the id {key!r} appears twice; passage ids must be unique.")
        seen.add(key)
        for part in (key, text):
            data = part.encode("utf-8")
            hasher.update(len(data).to_bytes(8, "little") + data)
        if keep(count - 1):
            kept[count - 1] = (key, text)
    if not count:
        raise UserError(f"{corpus} holds no passages.")
    return CorpusScan(count, hasher.hexdigest()[:16], kept)


def shard_path(folder: str, index: int) -> str:
    return os.path.join(folder, SHARD_PATTERN.format(index))


def read_manifest(folder: str) -> dict[str, Any] | None:
    """The folder's manifest, or ``None`` if it has none."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path} is not a d2llm corpus-embeddings manifest (format {manifest.get('format')!r}).")
    return manifest


def _write_manifest(folder: str, manifest: dict[str, Any]) -> None:
    path = os.path.join(folder, MANIFEST)
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    os.replace(f"{path}.tmp", path)


def _prepare(folder: str, manifest: dict[str, Any], overwrite: bool) -> None:
    """Rank 0: start the folder, or check that a previous run's folder can be resumed (``overwrite``: replace it)."""
    os.makedirs(folder, exist_ok=True)
    previous = read_manifest(folder)
    shards = sorted(name for name in os.listdir(folder) if name.startswith("shard-"))
    if previous is not None and not overwrite:
        differ = [name for name in RESUME_FIELDS if previous.get(name) != manifest[name]]
        if differ:
            found = ", ".join(f"{name} {previous.get(name)!r} here vs {manifest[name]!r} now" for name in differ)
            raise UserError(
                f"{folder} holds embeddings made with other settings ({found}): give another --output, or add "
                "--overwrite to replace them."
            )
    elif shards and not overwrite:
        raise UserError(f"{folder} holds shard files but no {MANIFEST}: give another --output, or add --overwrite.")
    for name in shards if overwrite else [name for name in shards if name.endswith(".tmp")]:
        os.remove(os.path.join(folder, name))
    if previous is None or overwrite:
        _write_manifest(folder, {**manifest, "complete": False})


def _finish(folder: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Rank 0: check that every shard is there and mark the folder complete."""
    missing = [i for i in range(manifest["num_shards"]) if not os.path.isfile(shard_path(folder, i))]
    if missing:
        raise UserError(
            f"{folder} misses {len(missing)} shard(s) after every rank finished (first: "
            f"{SHARD_PATTERN.format(missing[0])}): was another run writing there at the same time? Run the command "
            "again to encode them."
        )
    manifest = {**manifest, "complete": True}
    _write_manifest(folder, manifest)
    return manifest


def encode_corpus(
    model: D2LLM,
    corpus: str,
    output: str,
    *,
    dist: Distributed | None = None,
    role: str = "passage",
    batch_size: int = 32,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    show_progress_bar: bool | None = None,
) -> dict[str, Any]:
    """Encode every passage of ``corpus`` as ``role`` into the folder ``output`` (see the module docstring).

    Every rank calls it with the same model and corpus. Returns the manifest (on every rank).

    Args:
        model: The D2LLM whose embeddings an index will hold (on ``dist.device``).
        corpus: A BEIR folder or a ``.jsonl[.gz]`` with ``_id`` / ``id``, ``text`` (and ``title``) per line.
        output: The output folder; with several processes, a folder every process sees.
        dist: This process among the launched ones (:func:`d2llm_st.distributed.setup`); default: one process.
        role: ``"passage"`` (the model's document prompt, what an index of passages needs), ``"query"`` or
            ``"symmetric"``.
        batch_size: Passages per forward pass.
        shard_size: Passages per shard file: the most a killed rank loses, and the unit of work of a rank.
        overwrite: Replace embeddings in ``output`` made with another model, corpus or settings.
        show_progress_bar: Rank 0's progress bar per shard (default: when logging at INFO).

    Raises:
        UserError: a corpus without passages or with repeated ids; ``output`` holds embeddings made otherwise.
        DistributedError: the ranks hold different models or corpora, do not share ``output``, or one of them died
            or is stuck.
    """
    from d2llm_st.fingerprint import weights_fingerprint
    from d2llm_st.tasks import check_role, prompt_name

    dist = dist or Distributed()
    check_role(role)
    if shard_size < 1 or batch_size < 1:
        raise UserError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}.")
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
    output = os.path.abspath(output)
    dist.check_shared_folder(output, "The output folder")
    scan = scan_corpus(corpus, keep=lambda position: (position // shard_size) % dist.world_size == dist.rank)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model_fingerprint": weights_fingerprint(model, any_dtype=True),
        "role": role,
        "prompt": model.prompts.get(prompt_name(role), ""),
        "embedding_dim": model.get_embedding_dimension(),
        "dtype": "float32",
        "corpus": os.path.abspath(corpus),
        "corpus_digest": scan.digest,
        "num_passages": scan.count,
        "shard_size": shard_size,
        "num_shards": -(-scan.count // shard_size),
    }
    dist.check_same(
        json.dumps({name: manifest[name] for name in RESUME_FIELDS}, sort_keys=True),
        "the model and the corpus",
        "Every process must load the same --model and read the same --corpus.",
    )
    dist.on_main("prepare the output folder", lambda: _prepare(output, manifest, overwrite))
    mine = dist.shard(range(manifest["num_shards"]))
    todo = [i for i in mine if not os.path.isfile(shard_path(output, i))]
    logger.info(
        f"Rank {dist.rank} of {dist.world_size}: {len(mine) - len(todo)} of its {len(mine)} shards already written, "
        f"encoding {len(todo)}"
    )
    for i in todo:
        _encode_shard(model, scan, i, output, role, batch_size, shard_size, show_progress_bar and dist.is_main)
    dist.barrier("finish encoding (the ranks wait for the slowest one)")
    return dist.on_main("complete the output folder", lambda: _finish(output, manifest))


def _encode_shard(
    model: D2LLM,
    scan: CorpusScan,
    index: int,
    folder: str,
    role: str,
    batch_size: int,
    shard_size: int,
    show_progress_bar: bool,
) -> None:
    from safetensors.numpy import save_file

    start = time.perf_counter()
    positions = range(index * shard_size, min((index + 1) * shard_size, scan.count))
    ids = [scan.kept[p][0] for p in positions]
    texts = [scan.kept[p][1] for p in positions]
    embeddings = model.encode_texts(
        texts, role, batch_size=batch_size, convert_to_tensor=False, show_progress_bar=show_progress_bar
    )
    path = shard_path(folder, index)
    metadata = {"ids": json.dumps(ids), "first": str(positions[0])}
    save_file({"embeddings": np.ascontiguousarray(embeddings, dtype=np.float32)}, f"{path}.tmp", metadata=metadata)
    os.replace(f"{path}.tmp", path)
    logger.info(f"Wrote {os.path.basename(path)}: {len(ids)} passages in {time.perf_counter() - start:.1f} s")


@dataclass
class CorpusEmbeddings:
    """A complete corpus-embeddings folder in memory: ``ids[i]`` is the passage of ``embeddings[i]``."""

    manifest: dict[str, Any]
    ids: list[str]
    embeddings: np.ndarray


def check_complete(folder: str) -> dict[str, Any]:
    """The manifest of a complete corpus-embeddings folder; a clear error for an unfinished or missing one."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{folder} has no {MANIFEST}: not a folder written by d2llm encode.")
    if not manifest.get("complete"):
        raise UserError(f"{folder} is unfinished (a run was interrupted): run the same d2llm encode again to finish.")
    return manifest


def iter_corpus_embeddings(folder: str) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(ids, embeddings [n, dim])`` shard by shard, in corpus order, from a complete folder (memory: one shard)."""
    from safetensors import safe_open

    manifest = check_complete(folder)
    for i in range(manifest["num_shards"]):
        with safe_open(shard_path(folder, i), framework="numpy") as f:
            ids = json.loads(f.metadata()["ids"])
            yield ids, f.get_tensor("embeddings")


def load_corpus_embeddings(folder: str) -> CorpusEmbeddings:
    """All embeddings of a complete folder in one array (for a corpus that fits in memory)."""
    ids: list[str] = []
    blocks = []
    for shard_ids, embeddings in iter_corpus_embeddings(folder):
        ids += shard_ids
        blocks.append(embeddings)
    return CorpusEmbeddings(read_manifest(folder), ids, np.concatenate(blocks))

"""An on-disk cache of teacher scores, so a scoring run resumes where it stopped.

Teacher passes are the slow part of building distillation data. Each scored pair is stored under a
key made of the teacher identity, the template key and the two texts; a batch is committed as soon as it
is scored (SQLite, write-ahead log), so killing the process loses at most the batch in flight, and a
pair seen before is never scored again.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence

import numpy as np

_SCHEMA = "CREATE TABLE IF NOT EXISTS scores (key BLOB PRIMARY KEY, score REAL NOT NULL, features BLOB)"
_UPSERT = (
    "ON CONFLICT(key) DO UPDATE SET score = excluded.score, features = COALESCE(excluded.features, scores.features)"
)
JOURNAL_MODES = ("WAL", "DELETE")


def cache_key(identity: str, template_key: str, a: str, b: str) -> bytes:
    """A 16-byte digest of (teacher identity, template key, text a, text b); unambiguous thanks to length prefixes."""
    digest = hashlib.sha256()
    for part in (identity, template_key, a, b):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()[:16]


class ScoreCache:
    """Scores (and optionally final hidden-state features) of (teacher, template, pair) in a SQLite file.

    Args:
        path: The database file; created with its folder if missing. Several processes on one machine may share it.
        journal_mode: ``"WAL"`` (readers do not block the writer; one machine only) or ``"DELETE"`` (SQLite's
            rollback journal, for a file that one process at a time writes on a network filesystem).
    """

    def __init__(self, path: str, journal_mode: str = "WAL") -> None:
        if journal_mode not in JOURNAL_MODES:
            raise ValueError(f"journal_mode must be one of {JOURNAL_MODES}, got {journal_mode!r}.")
        self.path = os.path.abspath(path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=60)
        self._connection.execute(f"PRAGMA journal_mode={journal_mode}")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute(_SCHEMA)
        self._connection.commit()

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def __repr__(self) -> str:
        return f"ScoreCache({self.path!r}, entries={len(self)})"

    def get(self, keys: Sequence[bytes], with_features: bool = False) -> dict[bytes, tuple[float, np.ndarray | None]]:
        """The cached ``(score, features)`` of each known key; with ``with_features``, only entries that have them."""
        found: dict[bytes, tuple[float, np.ndarray | None]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite caps the number of bound parameters
            chunk = unique[start : start + 500]
            query = f"SELECT key, score, features FROM scores WHERE key IN ({','.join('?' * len(chunk))})"
            for key, score, blob in self._connection.execute(query, chunk):
                if with_features and blob is None:
                    continue
                found[key] = (score, None if blob is None else np.frombuffer(blob, dtype=np.float32).copy())
        return found

    def put(self, keys: Sequence[bytes], scores: Sequence[float], features: np.ndarray | None = None) -> None:
        """Store one batch and commit it. An entry that already has features keeps them if none are given."""
        rows = [
            (key, float(score), None if features is None else np.asarray(features[i], dtype=np.float32).tobytes())
            for i, (key, score) in enumerate(zip(keys, scores))
        ]
        self._connection.executemany(f"INSERT INTO scores (key, score, features) VALUES (?, ?, ?) {_UPSERT}", rows)
        self._connection.commit()

    def merge(self, path: str) -> int:
        """Copy every entry of the cache file ``path`` into this one, in one transaction, as :meth:`put` would.

        Merging the same file twice changes nothing, so a merge interrupted before its source file was deleted can
        be run again. Returns the number of entries in ``path`` (0 for a file killed before it held any).
        """
        self._connection.execute("ATTACH DATABASE ? AS other", (os.path.abspath(path),))
        try:
            tables = "SELECT COUNT(*) FROM other.sqlite_master WHERE type = 'table' AND name = 'scores'"
            if not self._connection.execute(tables).fetchone()[0]:
                return 0
            count = self._connection.execute("SELECT COUNT(*) FROM other.scores").fetchone()[0]
            # "WHERE true" lets SQLite parse the upsert clause after a SELECT.
            self._connection.execute(
                f"INSERT INTO scores (key, score, features) SELECT key, score, features FROM other.scores WHERE true "
                f"{_UPSERT}"
            )
            self._connection.commit()
            return count
        finally:
            if self._connection.in_transaction:
                self._connection.rollback()
            self._connection.execute("DETACH DATABASE other")

    def close(self) -> None:
        self._connection.close()

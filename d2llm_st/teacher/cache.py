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
        path: The database file; created with its folder if missing. Several processes may share it.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=60)
        self._connection.execute("PRAGMA journal_mode=WAL")
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
        self._connection.executemany(
            "INSERT INTO scores (key, score, features) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "score = excluded.score, features = COALESCE(excluded.features, scores.features)",
            rows,
        )
        self._connection.commit()

    def close(self) -> None:
        self._connection.close()

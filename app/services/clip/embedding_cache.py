"""A thread-safe LRU of embeddings, bounded in megabytes: the engine's image and text caches."""

import threading
from collections import OrderedDict

import numpy as np

from app.schemas.health import ClipCache


class EmbeddingCache:
    """A thread-safe LRU of embeddings bounded in megabytes (0 disables it)."""

    def __init__(self, max_mb: float) -> None:
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.hits = 0
        self.misses = 0
        self.bytes = 0
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @staticmethod
    def _cost(key: str, value: np.ndarray) -> int:
        return value.nbytes + len(key) + 100  # plus the entry's own overhead, roughly

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        cost = self._cost(key, value)
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= self._cost(key, old)
            self._items[key] = value
            self.bytes += cost
            while self.bytes > self.max_bytes:
                evicted_key, evicted = self._items.popitem(last=False)
                self.bytes -= self._cost(evicted_key, evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def stats(self) -> ClipCache:
        return ClipCache(
            hits=self.hits,
            misses=self.misses,
            size_mb=round(self.bytes / 2**20, 6),
            entries=len(self._items),
        )

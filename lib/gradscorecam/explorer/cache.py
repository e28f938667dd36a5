"""The explorer's memory: finished maps per (model, layer, image, class, method), and small per-model facts.

Only finished results go in. A computation that is interrupted or fails stores nothing, so a cache hit
is always a complete, correct map. Maps are kept on the CPU (a GPU's memory is for computing), and the
least recently used entries are dropped beyond a fixed count so a long classroom session does not grow
without bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True)
class ResultKey:
    """What a map depends on. ``method`` is the method's name with its effective options, such as its channel
    budget (:func:`~.compute.method_tag`), so a new budget is a new key and a default given or not is one key."""

    model: str
    layer: str
    image: str
    target: int
    method: str


class LRUCache(Generic[V]):
    """A thread-safe least-recently-used mapping with a fixed number of entries.

    Thread-safe because the explorer computes in a background thread while the widgets read the cache.
    """

    def __init__(self, max_entries: int = 64) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (marking it recently used), or None."""
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return self._entries[key]

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value``; drop the least recently used entry when full."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value, or ``compute()`` stored under ``key`` (nothing is stored if it raises)."""
        found = self.get(key)
        if found is not None:
            return found
        value = compute()
        self.put(key, value)
        return value

    def discard_where(self, stale: Callable[[Any], bool]) -> None:  # Any: the caller knows its keys' shape
        """Drop every entry whose key ``stale`` accepts."""
        with self._lock:
            for key in [k for k in self._entries if stale(k)]:
                del self._entries[key]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

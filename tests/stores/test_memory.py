"""The memory store on its own: expiry on read, sweeping, the LRU cap, thread safety."""

from __future__ import annotations

import threading

from sessionhub.stores.memory import MemoryStore


def _fields(expires: int, hard: int = 10**13) -> dict[str, str]:
    return {"e": str(expires), "x": str(hard), "l": "0", "c": "0"}


def test_expired_entry_is_invisible_on_read() -> None:
    """A session past its expiry is not returned, even before any sweep."""
    store = MemoryStore()
    store.put("a", _fields(100), 100)
    assert store.load("a", now_ms=99, idle_ms=10, touch=False) is not None
    assert store.load("a", now_ms=100, idle_ms=10, touch=False) is None


def test_load_slides_within_hard_expiry() -> None:
    """Sliding moves the expiry to now + idle, never past the hard expiry."""
    store = MemoryStore()
    store.put("a", _fields(100, hard=150), 100)
    assert store.load("a", now_ms=90, idle_ms=50)["e"] == "140"
    assert store.load("a", now_ms=120, idle_ms=50)["e"] == "150"


def test_sweep_removes_only_expired() -> None:
    """sweep() drops expired sessions and keeps live ones."""
    store = MemoryStore()
    store.put("old", _fields(10), 10)
    store.put("new", _fields(1000), 1000)
    assert store.sweep(now_ms=500) == 1
    assert len(store) == 1
    assert store.peek("new", 500) is not None


def test_cap_evicts_least_recently_used() -> None:
    """Past the cap the least recently used session goes, not the one just read."""
    store = MemoryStore(max_sessions=3)
    for storage_id in "abc":
        store.put(storage_id, _fields(1000), 1000)
    store.load("a", now_ms=1, idle_ms=10, touch=False)  # a is now the most recent
    store.put("d", _fields(1000), 1000)
    assert store.peek("b", 1) is None
    assert all(store.peek(s, 1) for s in "acd")
    assert store.evictions == 1


def test_update_of_missing_or_expired_session_fails() -> None:
    """update() refuses a session that is gone, so it is never recreated partially."""
    store = MemoryStore()
    assert store.update("nope", {"d:a": "1"}, (), now_ms=0) is False
    store.put("a", _fields(10), 10)
    assert store.update("a", {"d:a": "1"}, (), now_ms=20) is False


def test_threads_do_not_corrupt_the_store() -> None:
    """Many threads writing and reading concurrently leave a consistent store within its cap."""
    store = MemoryStore(max_sessions=500)

    def work(n: int) -> None:
        for i in range(300):
            storage_id = f"{n}-{i}"
            store.put(storage_id, _fields(10**6), 10**6)
            store.update(storage_id, {"d:x": str(i)}, (), now_ms=0)
            store.load(storage_id, now_ms=1, idle_ms=10)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 500
    assert store.evictions == 8 * 300 - 500


def test_background_sweeper_runs_on_its_interval() -> None:
    """The hub's maintenance loop empties expired sessions from memory without any read."""
    from helpers import build_settings, wait_for
    from sessionhub.hub import SessionHub

    settings = build_settings(None, session={"EXPIRES": 1, "MEMORY_CLEANUP_INTERVAL": 0.2})
    hub = SessionHub(settings)
    try:
        for _ in range(5):
            hub.create("alice")
        memory = hub.manager.core.memory
        assert len(memory) == 5
        wait_for(lambda: len(memory) == 0, timeout=5)
    finally:
        hub.close()

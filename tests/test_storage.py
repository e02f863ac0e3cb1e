"""reprsim.storage: atomic writes, verified entries, run lock and per-key lock (with real processes)."""

import errno
import json
import logging
import multiprocessing as mp
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from reprsim import storage
from reprsim.errors import ReprsimError

# torch and reprsim.experiments are imported inside the tests that need them: the spawned lock
# processes import this module, and stay fast that way.


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- atomic writes ------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_mode_follows_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        storage.atomic_write_bytes(tmp_path / "a" / "f.bin", b"x")
        storage.write_verified(tmp_path / "v.rsv", b"y")
        (tmp_path / "plain").write_bytes(b"z")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert _mode(tmp_path / "a" / "f.bin") == expected == _mode(tmp_path / "plain")
    assert _mode(tmp_path / "v.rsv") == expected
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "a") == []


def test_atomic_write_replaces_and_store_reexports(tmp_path):
    p = tmp_path / "x.json"
    storage.atomic_write_json(p, {"b": 1, "a": Path("/q")})
    assert json.loads(p.read_text()) == {"a": "/q", "b": 1}
    assert p.read_text() == json.dumps({"a": "/q", "b": 1}, indent=2, sort_keys=True)  # same format as before
    storage.atomic_write_bytes(p, memoryview(b"new"))
    assert p.read_bytes() == b"new"
    from reprsim.experiments import store

    assert (
        store.atomic_write_bytes is storage.atomic_write_bytes and store.atomic_write_json is storage.atomic_write_json
    )


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_full_disk_gives_one_line_and_no_temp_file(tmp_path, monkeypatch, where):
    target = tmp_path / "entry.npy"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, where, _enospc)
    with pytest.raises(ReprsimError) as info:
        storage.atomic_write_bytes(target, b"new content")
    monkeypatch.undo()
    msg = str(info.value)
    assert str(target) in msg and "disk is full" in msg and "free space" in msg and "\n" not in msg
    assert _leftovers(tmp_path) == [] and target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.npy"]


def test_read_only_folder_and_verified_write_errors(tmp_path, monkeypatch):
    real_open = os.open

    def erofs(path, flags, *a):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", erofs)
    with pytest.raises(ReprsimError, match=r"cannot write .*e\.rsv: the folder is read-only.*writable folder"):
        storage.write_verified(tmp_path / "e.rsv", b"data")
    with pytest.raises(ReprsimError, match="cannot create the lock file"):
        storage.RunLock(tmp_path / "run").acquire()
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [tmp_path / "run"] and not list((tmp_path / "run").iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ReprsimError, match="cannot create the folder"):
        storage.atomic_write_bytes(blocker / "sub" / "x", b"")


# ---- verified entries ---------------------------------------------------------------------------
def test_verified_round_trip_and_header(tmp_path):
    p = tmp_path / "e.rsv"
    storage.write_verified(p, b"payload")
    raw = p.read_bytes()
    assert raw.startswith(b"RSV1 ") and raw.endswith(b"\npayload") and raw.count(b"\n") == 1
    assert storage.read_verified(p) == b"payload"
    storage.write_verified(p, b"")
    assert storage.read_verified(p) == b""
    assert storage.read_verified(tmp_path / "missing") is None
    assert list(tmp_path.iterdir()) == [p]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda raw: raw[:-3], "truncated"),
        (lambda raw: raw[:10], "no or a damaged checksum header"),
        (lambda raw: b"", "no or a damaged checksum header"),
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "checksum mismatch"),
        (lambda raw: raw + b"!", "trailing bytes"),
        (lambda raw: b"\x93NUMPY plain npy file", "no or a damaged checksum header"),
    ],
)
def test_bad_entries_are_logged_moved_aside_and_never_raise(tmp_path, caplog, damage, reason):
    p = tmp_path / "feat.rsv"
    storage.write_verified_array(p, np.arange(100.0))
    p.write_bytes(damage(p.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="reprsim.storage"):
        assert storage.read_verified_array(p) is None
    assert str(p) in caplog.text and reason in caplog.text
    aside = list(tmp_path.glob("feat.rsv.corrupt-*"))
    assert len(aside) == 1 and not p.exists()
    assert storage.read_verified_array(p) is None  # now simply missing: no second warning
    assert caplog.text.count("cache entry") == 1


def test_unreadable_entry_is_none(tmp_path, caplog):
    d = tmp_path / "dir.rsv"
    d.mkdir()  # e.g. a folder where a file should be
    with caplog.at_level(logging.WARNING, logger="reprsim.storage"):
        assert storage.read_verified(d) is None
    assert "unreadable" in caplog.text and str(d) in caplog.text


def test_undecodable_payload_is_treated_as_corrupt(tmp_path, caplog):
    p = tmp_path / "x.rsv"
    storage.write_verified(p, b"not an npy")
    with caplog.at_level(logging.WARNING, logger="reprsim.storage"):
        assert storage.read_verified_array(p) is None
    assert "undecodable" in caplog.text and not p.exists()


def test_typed_entries_round_trip(tmp_path):
    a = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    storage.write_verified_array(tmp_path / "a", a)
    b = storage.read_verified_array(tmp_path / "a")
    assert b.dtype == np.float32 and np.array_equal(a, b)
    storage.write_verified_arrays(tmp_path / "s", {"train": np.arange(5), "test": np.array([], dtype=np.int64)})
    s = storage.read_verified_arrays(tmp_path / "s")
    assert set(s) == {"train", "test"} and np.array_equal(s["train"], np.arange(5)) and s["test"].size == 0
    storage.write_verified_json(tmp_path / "j", {"x": [1, 2], "p": Path("/a")})
    assert storage.read_verified_json(tmp_path / "j") == {"p": "/a", "x": [1, 2]}
    with pytest.raises(ValueError):
        storage.write_verified_array(tmp_path / "o", np.array([object()]))  # no pickles


def test_state_dict_and_info_from_the_same_bytes(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[1].weight = torch.nn.Parameter(model[1].weight)  # plain tensors
    sd = model.state_dict()
    sd["tied"] = sd["0.weight"]  # tied weights share storage: must still be writable
    p = tmp_path / "models" / "k.safetensors.rsv"
    storage.write_verified_state_dict(p, sd, {"epochs": 3, "acc": 0.5})
    tensors, info = storage.read_verified_state_dict(p)
    assert info == {"acc": 0.5, "epochs": 3}
    assert set(tensors) == set(sd) and all(torch.equal(tensors[k], sd[k]) for k in sd)
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    assert storage.read_verified_state_dict(p) is None


def test_cached_recomputes_a_truncated_entry(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.full(50, len(calls), dtype=np.int64)

    p = tmp_path / "f.npy.rsv"
    kw = {"read": storage.read_verified_array, "write": storage.write_verified_array}
    assert storage.cached(p, compute, **kw)[0] == 1
    assert storage.cached(p, compute, **kw)[0] == 1 and len(calls) == 1  # cache hit
    p.write_bytes(p.read_bytes()[:-8])  # truncated
    assert storage.cached(p, compute, **kw)[0] == 2 and len(calls) == 2  # recomputed, not fatal
    assert storage.cached(p, compute, **kw)[0] == 2 and len(calls) == 2
    assert len(list(tmp_path.glob("f.npy.rsv.corrupt-*"))) == 1


# ---- locks (real processes) ---------------------------------------------------------------------
def _hold_run_lock(folder: str, ready, release) -> None:
    lock = storage.RunLock(folder).acquire()
    ready.set()
    release.wait(30)
    lock.release()


def _hold_and_die(folder: str, ready) -> None:
    storage.RunLock(folder).acquire()
    ready.set()
    time.sleep(60)  # killed by the parent while holding the lock


def test_run_lock_refuses_a_second_process_with_the_pid(tmp_path):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_run_lock, args=(str(tmp_path / "run"), ready, release))
    child.start()
    try:
        assert ready.wait(60)
        t0 = time.monotonic()
        with pytest.raises(ReprsimError) as info:
            storage.RunLock(tmp_path / "run").acquire()
        assert time.monotonic() - t0 < 2  # refused at once, not after a wait
        msg = str(info.value)
        assert f"PID {child.pid}" in msg and str(tmp_path / "run") in msg and "another --out" in msg
        release.set()
        child.join(30)
        with storage.RunLock(tmp_path / "run") as lock:  # free again after a clean release
            assert lock.held and lock.previous == {}
            assert json.loads((tmp_path / "run" / storage.RUN_LOCK_FILE).read_text())["pid"] == os.getpid()
        assert (tmp_path / "run" / storage.RUN_LOCK_FILE).read_text() == ""
    finally:
        release.set()
        child.join(10)
        if child.is_alive():
            child.kill()


def test_stale_run_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_and_die, args=(str(tmp_path), ready))
    child.start()
    assert ready.wait(60)
    child.kill()  # SIGKILL: no cleanup ran, the lock file still names the dead PID
    child.join(10)
    assert json.loads((tmp_path / storage.RUN_LOCK_FILE).read_text())["pid"] == child.pid
    with caplog.at_level(logging.INFO, logger="reprsim.storage"):
        lock = storage.RunLock(tmp_path).acquire()
    assert lock.previous["pid"] == child.pid and f"PID {child.pid}" in caplog.text
    with pytest.raises(ReprsimError, match=f"PID {os.getpid()}"):  # not re-entrant, even in-process
        storage.RunLock(tmp_path).acquire()
    lock.release()


def _compute_once(path: str, counter: str, start, results) -> None:
    start.wait(60)

    def compute():
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough for the other process to find the entry missing
        return np.arange(10.0) * 3

    out = storage.cached(path, compute, read=storage.read_verified_array, write=storage.write_verified_array)
    results.put(out.tolist())


def test_key_lock_two_processes_compute_once(tmp_path):
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    entry, counter = tmp_path / "models" / "k.npy.rsv", tmp_path / "count.txt"
    procs = [ctx.Process(target=_compute_once, args=(str(entry), str(counter), start, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    try:
        start.set()  # both start together (each waits for the event after its imports)
        values = [results.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert values[0] == values[1] == (np.arange(10.0) * 3).tolist()
    assert len(counter.read_text().splitlines()) == 1  # computed by one process only
    assert storage.lock_path(entry).exists() and not _leftovers(entry.parent)


def test_key_lock_timeout_names_the_holder(tmp_path):
    entry = tmp_path / "e"
    with storage.key_lock(entry):
        t0 = time.monotonic()
        with pytest.raises(ReprsimError, match=f"timed out after 0.2 s waiting for .*e, locked by PID {os.getpid()}"):
            with storage.key_lock(entry, timeout=0.2):
                pass
        assert 0.15 < time.monotonic() - t0 < 2
    with storage.key_lock(entry, timeout=0.2):  # released
        pass

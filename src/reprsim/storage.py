"""Safe files on a shared disk: atomic writes, checksummed cache entries, run and per-key locks.

Writing
    :func:`atomic_write_bytes` / :func:`atomic_write_json` write to a unique temporary file in the
    target's folder (created with ``O_EXCL`` and mode 0o666, so the umask applies as for any normal
    file), fsync it, publish it with :func:`os.replace` and fsync the folder. A reader sees the old
    file or the new one, never a mix, and two processes never share a temporary name. A full disk
    (ENOSPC, EDQUOT), a read-only or forbidden folder and every other ``OSError`` become one
    :class:`~reprsim.errors.ReprsimError` line naming the path and the fix; no temporary file is
    left behind (also on KeyboardInterrupt). The temporary file is created ``O_EXCL | O_NOFOLLOW``
    and a target that is a symlink or not a regular file is refused, naming it
    (:func:`reprsim.safe_paths.check_writable_target`).

Verified entries
    :func:`write_verified` stores ``HEADER + payload`` in one file, the header being one ASCII line
    ``RSV1 <sha256 hex of payload> <payload length>\\n``. :func:`read_verified` reads header and
    payload through one open file and returns the payload only if its length and SHA-256 match;
    a missing entry gives None quietly, and a truncated, corrupt, foreign or unreadable one gives
    None after a logged warning (logger ``reprsim.storage``) and after the bad file is renamed to
    ``<name>.corrupt-<time>`` (kept for inspection, never read again). It never raises. Typed
    helpers wrap numpy arrays (``.npy`` bytes), several arrays (``.npz`` bytes), safetensors state
    dicts with a JSON info dict (tensors and info in the same bytes) and JSON; a payload that
    verifies but does not decode is treated like a corrupt one.

Locks (``fcntl.flock``: released by the kernel when the holder dies; on NFS Linux emulates flock
with POSIX locks, which needs a working lock manager)
    :class:`RunLock` locks a run folder for the life of a run: a second holder is refused at once
    with the PID, host and start time of the first; a lock left by a dead process is simply taken
    over (the kernel released it) and reported in the log. :func:`key_lock` is a per-entry
    exclusive lock: concurrent units and sweeps that need the same cache entry wait for the one
    computing it. :func:`cached` is the whole pattern (verified read; else lock, read again,
    compute, write). Lock files are opened ``O_NOFOLLOW``; a symlink, a non-regular file or a file
    with several hard links where a lock file should be is refused, naming it (a planted link
    must never make reprsim truncate someone else's file). Lock files are small and left in place: deleting a lock file that a waiter
    has open would break mutual exclusion; remove them only when no reprsim process runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import secrets
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from reprsim.errors import ReprsimError
from reprsim.safe_paths import check_writable_target, not_regular_error

log = logging.getLogger(__name__)

T = TypeVar("T")

MAGIC = b"RSV1"
_HEADER_MAX = 128
RUN_LOCK_FILE = ".reprsim-run.lock"
"""Default name of the lock file :class:`RunLock` keeps inside a run folder."""

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}

Buffer = bytes | bytearray | memoryview


# ---- paths --------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """The shared reprsim cache folder: ``$REPRSIM_CACHE`` if set, else ``~/.cache/reprsim``."""
    base = os.environ.get("REPRSIM_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "reprsim"


def _write_error(path: Path, exc: OSError, what: str = "write") -> ReprsimError:
    """One line naming the path, the cause and the fix."""
    if exc.errno in _DISK_FULL:
        cause, fix = "the disk is full (or the quota is exhausted)", "free space there or use a folder on another disk"
    elif exc.errno in _NOT_WRITABLE:
        cause, fix = (
            "the folder is read-only or not writable by this user",
            "fix its permissions or use a writable folder",
        )
    else:
        cause, fix = exc.strerror or str(exc), "check the path and the file system"
    return ReprsimError(f"cannot {what} {path}: {cause}; {fix} (e.g. another --out or --cache-dir)")


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(folder, exc, "create the folder") from exc


# ---- atomic writes ------------------------------------------------------------------------------
def _write_all(fd: int, data: Buffer) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """A new file ``.<name>.<pid>.<random>.tmp`` in ``folder``, opened O_EXCL with mode 0o666 & ~umask."""
    # O_EXCL never follows a symlink (a planted one at the name is EEXIST: another name is tried)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{name[:120]}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not find a free temporary name", str(folder))


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; not every file system supports fsync on a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, chunks: Iterable[Buffer]) -> None:
    path = Path(path)
    _mkdir(path.parent)
    check_writable_target(path)
    tmp: Path | None = None
    try:
        fd, tmp = _create_temp(path.parent, path.name)
        try:
            for chunk in chunks:
                _write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: Buffer) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    Creates missing parent folders. The file gets mode 0o666 minus the umask, like ``open(path, "w")``.
    Raises ReprsimError (one line: path, cause, fix) when the folder cannot be written — full disk,
    read-only or forbidden folder — and leaves no temporary file.
    """
    _atomic_write(Path(path), [data])


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON (``default=str``), written with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


# ---- verified entries ---------------------------------------------------------------------------
def _header(payload: Buffer) -> bytes:
    view = memoryview(payload).cast("B")
    return b"%s %s %d\n" % (MAGIC, hashlib.sha256(view).hexdigest().encode(), view.nbytes)


def write_verified(path: str | Path, data: Buffer) -> None:
    """Store ``data`` atomically in ``path`` as one file: a checksum header line, then the bytes.

    Raises ReprsimError like :func:`atomic_write_bytes`.
    """
    _atomic_write(Path(path), [_header(data), data])


def _move_aside(path: Path, reason: str, fd_stat: os.stat_result | None) -> None:
    """Log the bad entry and rename it to ``<name>.corrupt-<time>`` (only if it is still the same file)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        now = os.stat(path)
        if fd_stat is not None and (now.st_ino, now.st_dev) != (fd_stat.st_ino, fd_stat.st_dev):
            log.warning("cache entry %s was %s; it has been replaced by another process meanwhile", path, reason)
            return
        os.replace(path, target)
    except OSError as exc:
        log.warning(
            "cache entry %s is %s and could not be moved aside (%s); it will be recomputed",
            path,
            reason,
            exc.strerror or exc,
        )
        return
    log.warning("cache entry %s is %s; moved it to %s, it will be recomputed", path, reason, target.name)


def _parse_header(line: bytes) -> tuple[str, int] | None:
    parts = line.rstrip(b"\n").split(b" ")
    if not line.endswith(b"\n") or len(parts) != 3 or parts[0] != MAGIC or len(parts[1]) != 64:
        return None
    try:
        int(parts[1], 16)
        length = int(parts[2])
    except ValueError:
        return None
    return (parts[1].decode(), length) if length >= 0 else None


def read_verified(path: str | Path) -> bytes | None:
    """The payload stored by :func:`write_verified`, or None.

    None without a message when ``path`` does not exist; None after a logged warning and after
    moving the file to ``<name>.corrupt-<time>`` when it is truncated, has extra bytes, fails the
    checksum, lacks the header (not written by :func:`write_verified`), cannot be read, or is a
    symlink or not a regular file (never followed or read: a FIFO would block). Header and payload
    come from one open file. Never raises.
    """
    path = Path(path)
    st = None
    try:
        # no symlink, and O_NONBLOCK: a FIFO planted under an entry's name must not block the reader
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            parsed = _parse_header(fh.readline(_HEADER_MAX))
            if parsed is None:
                reason = "not a verified entry (no or a damaged checksum header)"
            else:
                digest, length = parsed
                payload = fh.read(length + 1)
                if len(payload) < length:
                    reason = f"truncated ({len(payload)} of {length} bytes)"
                elif len(payload) > length:
                    reason = "longer than recorded (trailing bytes)"
                elif hashlib.sha256(payload).hexdigest() != digest:
                    reason = "corrupt (checksum mismatch)"
                else:
                    return payload
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = "a symbolic link (not followed)" if exc.errno == errno.ELOOP else f"unreadable ({exc.strerror or exc})"
    except Exception as exc:  # noqa: BLE001  (never raise from a cache read)
        reason = f"unreadable ({type(exc).__name__}: {exc})"
    _move_aside(path, reason, st)
    return None


def _decoded(path: Path, decode: Callable[[bytes], T]) -> T | None:
    data = read_verified(path)
    if data is None:
        return None
    try:
        return decode(data)
    except Exception as exc:  # noqa: BLE001  (verified bytes that do not decode: a foreign or buggy writer)
        _move_aside(path, f"undecodable ({type(exc).__name__}: {exc})", None)
        return None


def write_verified_json(path: str | Path, obj: Any) -> None:
    """``obj`` as JSON (key-sorted, ``default=str``) in a verified entry."""
    write_verified(path, json.dumps(obj, sort_keys=True, default=str).encode())


def read_verified_json(path: str | Path) -> Any | None:
    """The object stored by :func:`write_verified_json`, or None (see :func:`read_verified`)."""
    return _decoded(Path(path), lambda b: json.loads(b.decode()))


def write_verified_array(path: str | Path, array: Any) -> None:
    """One numpy array (``.npy`` bytes, no pickles) in a verified entry."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    write_verified(path, buf.getbuffer())


def read_verified_array(path: str | Path) -> Any | None:
    """The numpy array stored by :func:`write_verified_array`, or None (see :func:`read_verified`)."""
    import numpy as np

    return _decoded(Path(path), lambda b: np.load(io.BytesIO(b), allow_pickle=False))


def write_verified_arrays(path: str | Path, arrays: Mapping[str, Any]) -> None:
    """Several named numpy arrays (uncompressed ``.npz`` bytes, no pickles) in a verified entry."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    write_verified(path, buf.getbuffer())


def read_verified_arrays(path: str | Path) -> dict[str, Any] | None:
    """The dict of arrays stored by :func:`write_verified_arrays`, or None (see :func:`read_verified`)."""
    import numpy as np

    def decode(b: bytes) -> dict[str, Any]:
        with np.load(io.BytesIO(b), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    return _decoded(Path(path), decode)


_INFO_KEY = "reprsim_info"


def write_verified_state_dict(
    path: str | Path, tensors: Mapping[str, Any], info: Mapping[str, Any] | None = None
) -> None:
    """A torch state dict as safetensors bytes, with ``info`` (JSON-serialisable) stored in the
    safetensors metadata of the same bytes, in a verified entry.

    Tensors are detached, cloned and made contiguous (tied weights share storage, which safetensors
    refuses).
    """
    from safetensors.torch import save

    data = save(
        {k: v.detach().clone().contiguous() for k, v in tensors.items()},
        metadata={_INFO_KEY: json.dumps(dict(info or {}), sort_keys=True, default=str)},
    )
    write_verified(path, data)


def read_verified_state_dict(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(tensors on CPU, info)`` stored by :func:`write_verified_state_dict`, both decoded from the
    same verified bytes (one open file), or None (see :func:`read_verified`)."""
    from safetensors.torch import load

    def decode(b: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        (n,) = struct.unpack("<Q", b[:8])
        meta = json.loads(b[8 : 8 + n].decode()).get("__metadata__") or {}
        return load(b), json.loads(meta.get(_INFO_KEY, "{}"))

    return _decoded(Path(path), decode)


# ---- locks --------------------------------------------------------------------------------------
def _holder_text() -> str:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started})


def _read_holder(fd: int) -> dict[str, Any]:
    """The holder record in a lock file ({} when empty or unreadable)."""
    try:
        raw = os.pread(fd, 4096, 0)
        rec = json.loads(raw.decode()) if raw.strip() else {}
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_text().encode(), 0)
    except OSError:
        pass  # the record is informational only


def _describe(rec: Mapping[str, Any]) -> str:
    if not rec.get("pid"):
        return "a process whose PID is not recorded yet"
    host = f" on {rec['host']}" if rec.get("host") and rec.get("host") != socket.gethostname() else ""
    since = f", since {rec['started']}" if rec.get("started") else ""
    return f"PID {rec['pid']}{host}{since}"


def _open_lock_file(path: Path) -> int:
    """Open (creating) a lock file without following a symlink; only a regular file with one link.

    The lock file is truncated and rewritten (the holder record): a symlink or hard link planted in a
    shared cache or a foreign run folder must never make that empty someone else's file.
    """
    _mkdir(path.parent)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise not_regular_error(path, "lock file", "a symbolic link") from None
        raise _write_error(path, exc, "create the lock file") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise not_regular_error(
            path,
            "lock file",
            "not a regular file" if not stat.S_ISREG(st.st_mode) else f"a file with {st.st_nlink} hard links",
        )
    return fd


class RunLock:
    """An exclusive lock on a run folder, held for the life of a run.

    ``RunLock(folder).acquire()`` (or ``with RunLock(folder):``) creates the folder if needed and
    takes ``<folder>/.reprsim-run.lock`` without waiting. If another process holds it, ReprsimError
    names the PID (and host, start time) holding it; if a process that held it died, the kernel has
    released it and it is taken over (``previous`` holds the dead holder's record, which is logged).
    The holder's PID, host and start time are written into the lock file and cleared on release.
    Not re-entrant: a second RunLock on the same folder in the same process is refused too. A
    forked child shares the lock (it never releases it); the lock file is not inherited across exec.
    Dropping the object does not release the lock (the process's exit does): call :meth:`release`
    or use ``with``.
    """

    def __init__(self, folder: str | Path, name: str = RUN_LOCK_FILE) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.previous: dict[str, Any] = {}
        self._fd: int | None = None
        self._pid = 0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> Self:
        """Take the lock or raise ReprsimError at once; returns self."""
        if self._fd is not None:
            return self
        fd = _open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            rec = _read_holder(fd)
            for _ in range(20):  # the holder writes its record right after locking
                if rec.get("pid"):
                    break
                time.sleep(0.05)
                rec = _read_holder(fd)
            os.close(fd)
            raise ReprsimError(
                f"{self.folder} is in use by another reprsim run ({_describe(rec)}); wait for it to finish "
                f"or stop it{' (kill ' + str(rec['pid']) + ')' if rec.get('pid') else ''}, or choose another --out folder"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise _write_error(self.path, exc, "lock") from exc
        self.previous = _read_holder(fd)
        if self.previous.get("pid"):
            log.info(
                "taking over the run lock of %s left by %s, which is no longer running",
                self.folder,
                _describe(self.previous),
            )
        _write_holder(fd)
        self._fd, self._pid = fd, os.getpid()
        return self

    def release(self) -> None:
        """Clear the holder record and release the lock (no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if os.getpid() == self._pid:  # a forked child shares the lock: it must not release it
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(path: str | Path) -> Path:
    """The lock file :func:`key_lock` uses for the entry ``path``: ``<folder>/.<name>.lock``."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def key_lock(path: str | Path, timeout: float | None = None, poll: float = 0.1) -> Iterator[None]:
    """Hold an exclusive lock on the cache entry ``path`` (lock file ``<folder>/.<name>.lock``).

    Waits while another process (or thread) holds it — logging once who holds it — for ever, or at
    most ``timeout`` seconds (then ReprsimError naming the entry and the holder). Not re-entrant.
    Use it as: lock; read the verified entry; if missing, compute and write it; unlock (or call
    :func:`cached`).
    """
    lp = lock_path(path)
    fd = _open_lock_file(lp)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s, which %s is computing", Path(path).name, _describe(_read_holder(fd)))
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise ReprsimError(
                                f"timed out after {timeout:g} s waiting for {path}, locked by "
                                f"{_describe(_read_holder(fd))}; retry later or stop that process"
                            ) from None
                        time.sleep(poll)
        _write_holder(fd)
        owner = os.getpid()
        try:
            yield
        finally:
            if os.getpid() == owner:  # never release from a forked child (the lock is shared)
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def cached(
    path: str | Path,
    compute: Callable[[], T],
    read: Callable[[Path], T | None] = read_verified,
    write: Callable[[Path, T], None] = write_verified,
    timeout: float | None = None,
) -> T:
    """The entry at ``path``: read (verified) if present, else computed once across processes.

    A verified read is tried first without a lock; on a miss (or a corrupt entry, which is moved
    aside) the entry's :func:`key_lock` is taken, the entry is read again (another process may have
    written it meanwhile) and only then ``compute()`` runs and ``write(path, value)`` stores it.
    ``read``/``write`` are a matching pair, e.g. :func:`read_verified_array` /
    :func:`write_verified_array`; ``read`` must return None for a missing or bad entry.
    """
    path = Path(path)
    value = read(path)
    if value is not None:
        return value
    with key_lock(path, timeout=timeout):
        value = read(path)
        if value is None:
            value = compute()
            write(path, value)
    return value

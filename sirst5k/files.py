"""Writing files so that nothing half-written is ever left: atomic_path and interruptible.

- `interruptible(signals)`: the one signal handler of the project. The signals raise
  KeyboardInterrupt, and the yielded check() raises it again when Python dropped it (an
  exception raised by a handler while a callback such as a weakref or __del__ runs is lost;
  h5py runs such callbacks often); Python's "Exception ignored in ..." traceback for such a
  dropped interrupt is not printed while the handler is installed.
- `atomic_path(dest)`: yields a temporary path beside dest and moves it onto dest only when
  the block succeeds; a failure, Ctrl-C or SIGTERM removes it and leaves dest untouched.
  It catches SIGTERM only: Ctrl-C keeps whatever meaning the caller gave it (the trainer
  defers it to the next batch boundary). Without force the final step is exclusive (a hard
  link that fails if dest appeared meanwhile), so of two writers one wins and the other says
  so. Temporary files are named `.NAME.<pid>.<random>.partial`; those of processes that no
  longer run (kill -9) are removed by the next atomic_path to the same dest.
- `DeferredInterrupt`: the first Ctrl-C only sets `asked` (the trainer reads it between
  batches, so its saved state is a whole number of steps); a second one raises at once.
- `check_free_space(dest, nbytes)`: a one-line error before writing what cannot fit (with a
  5 % margin, said in it) or into a folder that cannot be written (check_writable);
  `is_disk_full(error)`, `disk_full(path)` and `write_error(path, error)` name the cause of
  a write that failed (a disk that filled up, a read-only one).
- `safe_name(name)`: a file name taken from data (a store's source name, an image stem) as one
  plain base name, so that it cannot reach outside the output folder.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sirst5k.errors import SirstError

BOTH = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interruptible(signals: tuple[int, ...] = BOTH) -> Iterator[Callable[[], None]]:
    """The signals raise KeyboardInterrupt; yields a check() that raises it again if dropped."""
    got: list[int] = []

    def handler(signum, frame):
        got.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    def check() -> None:
        if got:
            raise KeyboardInterrupt(f"signal {got[0]}")

    def unraisable(u) -> None:  # the dropped interrupt: check() raises it, no traceback here
        if not (got and isinstance(u.exc_value, KeyboardInterrupt)):
            hook(u)

    previous = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: signals go to the main thread's handlers
            break
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield check
    finally:
        sys.unraisablehook = hook
        for sig, h in previous.items():
            signal.signal(sig, h)


class DeferredInterrupt:
    """Context manager: the first SIGINT sets `self.asked` (and prints `message` when announce);
    a second one raises KeyboardInterrupt. Outside the main thread it installs nothing."""

    message = ""

    def __init__(self, announce: bool = False):
        self.asked, self.announce, self._old = False, announce, None

    def _handler(self, signum, frame):
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        if self.announce and self.message:
            print(self.message, file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@contextmanager
def atomic_path(dest: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; move it onto `dest` only if the block succeeds.

    Raises SirstError when dest exists and not force.
    """
    dest = Path(dest)
    if dest.exists() and not force:
        raise SirstError(f"{dest} exists: choose another output or pass --force to overwrite it")
    if not dest.parent.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(dest)
    prefix = f".{dest.name}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with interruptible((signal.SIGTERM,)) as check:
            yield tmp
            check()  # a SIGTERM whose exception was dropped: no rename
            if force:
                os.replace(tmp, dest)
            else:  # exclusive: fails if another process created dest since the check above
                try:
                    os.link(tmp, dest)
                except FileExistsError:
                    raise SirstError(
                        f"{dest} was created by another process while this one wrote it; "
                        "nothing was replaced: choose another output or pass --force"
                    ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_partials(dest: Path) -> list[Path]:
    """Remove `.NAME.<pid>.*.partial` files beside dest whose process is gone; return them."""
    removed = []
    for p in dest.parent.glob(f".{dest.name}.*.partial"):
        pid = p.name[len(dest.name) + 2 :].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


MARGIN = 0.05  # check_free_space asks for this much more than the estimate


def _existing(folder: Path) -> Path:
    """folder, or its nearest parent that exists (a folder not made yet is on its disk)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def mount_point(folder: str | os.PathLike) -> Path:
    """The mount point of the disk (file system) holding folder."""
    p = _existing(Path(folder)).resolve()
    while not os.path.ismount(p):
        p = p.parent
    return p


def is_disk_full(error: BaseException) -> bool:
    """Whether an error is a full disk or quota: an OSError's errno, or HDF5's text."""
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(s in str(error) for s in ("No space left on device", "errno = 28", "Disk quota"))


def disk_full(path: str | os.PathLike) -> str:
    """`PATH: the disk MOUNT is full (N MB free in FOLDER)`, FOLDER being path itself when it is
    a folder, else the folder it is in: the start of a full-disk message."""
    folder = _existing(Path(path) if Path(path).is_dir() else Path(path).parent)
    free = shutil.disk_usage(folder).free
    return f"{path}: the disk {mount_point(folder)} is full ({free / 1e6:.1f} MB free in {folder})"


def write_error(path: str | os.PathLike, error: BaseException, need: int = 0) -> str:
    """One line for a write to path (a file or a folder) that failed: a full disk (disk_full;
    also when less than `need` bytes are free: some writers do not say why they failed), a
    read-only file system, or the error's own words."""
    folder = _existing(Path(path) if Path(path).is_dir() else Path(path).parent)
    if is_disk_full(error) or shutil.disk_usage(folder).free < need:
        return disk_full(path)
    if getattr(error, "errno", None) == errno.EROFS:
        return f"{path}: {mount_point(path)} is mounted read-only"
    return f"{path}: {getattr(error, 'strerror', None) or str(error).splitlines()[0]}"


def check_writable(dest: str | os.PathLike) -> None:
    """SirstError (one line) when dest's folder (or the nearest one that exists) cannot be
    written: a read-only file system, or no write permission."""
    folder = _existing(Path(dest).parent)
    probe = None
    try:
        fd, probe = tempfile.mkstemp(prefix=".sirst5k-probe.", dir=folder)
        os.close(fd)
    except OSError as e:
        why = "a read-only file system" if e.errno == errno.EROFS else (e.strerror or str(e))
        raise SirstError(
            f"{dest}: {folder} cannot be written ({why}); choose a folder you can write"
        ) from None
    finally:
        if probe:
            os.unlink(probe)


def check_free_space(dest: str | os.PathLike, nbytes: int) -> None:
    """SirstError (one line) when dest's folder cannot be written, or has less than nbytes
    plus a MARGIN (5 %) free."""
    check_writable(dest)
    folder = _existing(Path(dest).parent)
    free = shutil.disk_usage(folder).free
    need = nbytes * (1 + MARGIN)
    if free < need:
        raise SirstError(
            f"{dest}: needs about {nbytes / 1e6:.0f} MB plus a {MARGIN:.0%} margin "
            f"({need / 1e6:.0f} MB), and {folder} has {free / 1e6:.0f} MB free; free some space "
            "or write elsewhere"
        )


def safe_name(name: str, limit: int = 120) -> str:
    """`name`, a file name taken from data, as one plain base name: the last part of any path
    in it (after / or \\), control characters as "_", at most `limit` characters; "_" for an
    empty name or dots only ("." and ".." name folders, not files)."""
    base = re.split(r"[/\\]", str(name))[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "_", base)[:limit]
    return base if base.strip(".") else "_"

"""Writing files so that nothing half-written is ever left: atomic_path and interruptible.

- `interruptible(signals)`: the one signal handler of the project. The signals raise
  KeyboardInterrupt, and the yielded check() raises it again when Python dropped it (an
  exception raised by a handler while a callback such as a weakref or __del__ runs is lost;
  h5py runs such callbacks often).
- `atomic_path(dest)`: yields a temporary path beside dest and moves it onto dest only when
  the block succeeds; a failure, Ctrl-C or SIGTERM removes it and leaves dest untouched.
  It catches SIGTERM only: Ctrl-C keeps whatever meaning the caller gave it (the trainer
  defers it to the next batch boundary).
"""

from __future__ import annotations

import os
import signal
import tempfile
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

    previous = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: signals go to the main thread's handlers
            break
    try:
        yield check
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


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
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with interruptible((signal.SIGTERM,)) as check:
            yield tmp
            check()  # a SIGTERM whose exception was dropped: no rename
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)

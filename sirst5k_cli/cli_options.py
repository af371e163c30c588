"""Option types shared by the commands."""

from __future__ import annotations

import functools
import math
import re

import click

from sirst5k.detectors.methods import DETECTORS
from sirst5k.errors import SirstError


class Device(click.ParamType):
    """--device: auto, cpu, cuda or cuda:N (whether a GPU is there is checked when used)."""

    name = "device"

    def get_metavar(self, param, ctx=None):
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value, param, ctx):
        if re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(value)):
            return str(value)
        self.fail(f"{value!r}: choose auto, cpu, cuda or cuda:N", param, ctx)


DEVICE = Device()
SEED = click.IntRange(0, 2**32 - 1)  # what numpy's and torch's generators all take


class FiniteFloat(click.FloatRange):
    """A float option that must be finite (nan and inf are refused) and within the range given
    (FloatRange's arguments; none: any finite number)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r}: give a finite number", param, ctx)
        return rv


def method_choice() -> click.Choice:
    """--method: the names of sirst5k.detectors.methods' registry."""
    return click.Choice(sorted(DETECTORS))


def parse_range(ctx, param, value):
    """LO,HI options: two finite numbers (None: not given)."""
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give two numbers LO,HI, e.g. 0.5,2") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise click.BadParameter(f"{value!r}: give two finite numbers")
    return (lo, hi)


def _os_line(path, error: OSError) -> str:
    return f"{path}: {error.strerror or error}"


def errors_to_click(*paths: str, line=_os_line, hint: str = ""):
    """Decorate a command so that a user's error ends it in one line and exit 1: a SirstError
    as its own message; an OSError (an unwritable folder, a full disk) as line(path, error) +
    hint, path being the error's file, else the first of the command's `paths` arguments given
    (default: out). Anything else is a bug and keeps its traceback."""
    paths = paths or ("out",)

    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except SirstError as e:
                raise click.ClickException(str(e)) from e
            except OSError as e:
                path = e.filename or next((kwargs[p] for p in paths if kwargs.get(p)), None)
                raise click.ClickException(line(path, e) + hint) from e

        return run

    return decorate


def progress_bar(console=None, elapsed: bool = False, quiet: bool = False):
    """The commands' rich progress bar on `console` (default: stdout), gone when done: a task's
    description, its bar, done/total and the time left (elapsed: the time taken). quiet: none
    at all where the console is no terminal (no stray lines in logs and pipes)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = console or Console()
    clock = TimeElapsedColumn() if elapsed else TimeRemainingColumn()
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        clock,
        console=console,
        disable=quiet and not console.is_terminal,
        transient=True,
    )

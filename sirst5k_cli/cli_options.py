"""Option types shared by the commands."""

from __future__ import annotations

import re

import click

from sirst5k.detectors.methods import DETECTORS


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


def method_choice() -> click.Choice:
    """--method: the names of sirst5k.detectors.methods' registry."""
    return click.Choice(sorted(DETECTORS))

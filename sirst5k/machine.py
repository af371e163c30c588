"""What machine this is: the CPU's model and instruction sets (recorded with every timing and
run, since the same x86_64 VM can land on CPUs that differ by 1.3x) and whether bf16 is fast on
a device. torch is imported only to ask a CUDA device."""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path


def bf16_supported(device: str, cpuinfo: str | None = None) -> bool:
    """Whether bf16 autocast is fast on this device: a CUDA GPU with bf16, or a CPU with bf16
    instructions (the avx512_bf16 or amx_bf16 flag of /proc/cpuinfo, or `cpuinfo`), without
    which oneDNN emulates it more slowly than float32. (torch's own check asks only for
    AVX-512.) Elsewhere than Linux: False."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_bf16_supported()
    return bool(cpu_fields(cpuinfo)["flags"] & {"avx512_bf16", "amx_bf16"})


def cpu_fields(cpuinfo: str | None = None) -> dict:
    """The first processor's fields of /proc/cpuinfo (or of `cpuinfo`), "flags" as a set; on
    a system without that file, only an empty "flags"."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = {}
    for key, value in re.findall(r"^([^:\n]*?)\s*:(.*)$", cpuinfo, re.M):
        fields.setdefault(key.strip(), value.strip())
    fields["flags"] = set(fields.get("flags", "").split())
    return fields


# the instructions that decide CPU speed here: oneDNN's fp32 (avx2, avx512f), bf16 and int8 paths
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16")


def describe_cpu(cpuinfo: str | None = None) -> str:
    """One line that tells two CPUs apart in benchmark and run records: model name, family and
    model numbers, the SPEED_FLAGS it has, the logical cores, e.g. "AMD EPYC (family 25 model
    1), avx2, 2 cores". The same x86_64 VM can land on CPUs that differ by 1.3x (see
    docs/results.md), so every timing records this."""
    f = cpu_fields(cpuinfo)
    name = f.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in f and "model" in f:
        name += f" (family {f['cpu family']} model {f['model']})"
    isa = [x for x in SPEED_FLAGS if x in f["flags"]]
    return ", ".join([name, *isa, f"{os.cpu_count()} cores"])


def describe_run() -> dict:
    """The head of every benchmark record: today's date, the machine and Python, the CPU."""
    return {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "cpu": describe_cpu(),
    }

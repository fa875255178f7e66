"""What is alive of a running server, as the operating system shows it: its Python-backend stubs
by model, and whether any process of its group remains."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil

STUB_PREFIX = "triton_python_b"  # the stub's process name, as the kernel truncates it


def stub_models(server_pid: int) -> dict[int, str]:
    """Live Python-backend stubs of a server: pid -> model name (from the stub's model path)."""
    stubs = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(server_pid).children():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
                if (not child.name().startswith(STUB_PREFIX)
                        or child.status() == psutil.STATUS_ZOMBIE):
                    continue
                stubs[child.pid] = Path(child.cmdline()[1]).parent.parent.name
    return stubs


def group_alive(group: int) -> bool:
    """True while any process of the process group exists."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

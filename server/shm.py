"""The server's shared-memory regions in /dev/shm: made private once it is ready, removed once it
has stopped."""

from __future__ import annotations

import contextlib
from pathlib import Path

SHM_FOLDER = Path("/dev/shm")


def make_private(prefix: str) -> None:
    """Make the server's /dev/shm regions readable by this user only.

    The Python backend creates them with mode 0644 (boost sets it whatever the umask), and the
    frames pass through them. They are created while the models load, before any request, and
    this runs as soon as the server is ready.
    """
    for path in SHM_FOLDER.glob(f"{prefix}*"):
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)


def remove_shm_regions(prefix: str) -> list[str]:
    """Delete the /dev/shm files whose names start with `prefix`; their names."""
    removed = []
    for path in SHM_FOLDER.glob(f"{prefix}*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed

"""Helpers for tests that run real servers."""

from __future__ import annotations

from pathlib import Path

import psutil


def processes_using(repository: Path) -> list[str]:
    """Command lines of live processes that mention the repository (server and backend stubs)."""
    marker = str(repository.resolve())
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in part for part in cmdline):
            found.append(" ".join(cmdline))
    return found

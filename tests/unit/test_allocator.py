"""The server's allocator settings and the script that takes them from the Python stubs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from swaptron.server.launcher import (
    GLIBC_MALLOC,
    JEMALLOC_CONF,
    server_allocator,
    server_environment,
)


def test_jemalloc_is_preloaded_with_a_decay_when_present(tmp_path: Path) -> None:
    library = tmp_path / "libjemalloc.so.2"
    assert server_allocator(library) == {"LD_PRELOAD": str(library),
                                         "MALLOC_CONF": JEMALLOC_CONF}
    assert "dirty_decay_ms:" in JEMALLOC_CONF and "background_thread:true" in JEMALLOC_CONF


def test_without_jemalloc_glibc_hands_large_buffers_back() -> None:
    assert server_allocator(None) == GLIBC_MALLOC


def test_the_stub_shell_runs_without_the_servers_allocator(tmp_path: Path) -> None:
    for allocator in (server_allocator(tmp_path / "libjemalloc.so.2"), server_allocator(None)):
        env = server_environment(tmp_path, allocator)
        for name, value in allocator.items():
            assert env[name] == value
        # the stubs are started by `bash -c`, which runs $BASH_ENV first
        shown = subprocess.run(["bash", "-c", "env"], env={**env, "LD_PRELOAD": ""},
                               capture_output=True, text=True, check=True).stdout
        names = {line.split("=", 1)[0] for line in shown.splitlines()}
        assert not names & {*allocator, "LD_PRELOAD", "MALLOC_CONF"}, names

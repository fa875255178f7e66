"""server/reaper.py on real processes and real /dev/shm files: what counts as a stub of a dead
swaptron server, which regions are stale, and that only the process found is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from swaptron.server import reaper

STUB = "/cache/tritonserver/backends/python/triton_python_backend_stub"
SLEEPER = "import time; time.sleep(600)"


def region(prefix: str) -> str:
    """A region name as the Python backend makes it from a prefix."""
    return f"{prefix}{uuid.uuid4()}"


def stub_cmdline(region_name: str, server_pid: int) -> list[str]:
    """A stub's command line as tritonserver starts it."""
    return [STUB, "/repo/detector/1/model.py", region_name, "1048576", "1048576",
            str(server_pid), "/cache/tritonserver/backends/python", "336", "detector_0_0",
            "DEFAULT"]


def test_a_stub_and_the_bash_about_to_become_one_are_recognised() -> None:
    name = region(reaper.new_prefix())
    cmdline = stub_cmdline(name, 4321)
    assert reaper.swaptron_stub(reaper.stub_arguments(cmdline)) == (name, 4321)
    wrapper = ["bash", "-c", " exec " + " ".join(cmdline)]
    assert reaper.swaptron_stub(reaper.stub_arguments(wrapper)) == (name, 4321)


@pytest.mark.parametrize("cmdline", [
    ["/cache/tritonserver/bin/tritonserver", "--backend-config=python,shm-region-prefix-name="
     "swaptron_1_0123abcd_"],
    ["bash", "-c", "echo triton_python_backend_stub"],  # no stub arguments after it
    [STUB, "/repo/m/1/model.py", "triton_python_backend_shm_region_1", "1", "1", "42"],
    [STUB, "/repo/m/1/model.py", "swaptron_1_7f3a2b1c4d50_in0", "1", "1", "42"],  # a client ring
    [STUB, "/repo/m/1/model.py", f"swaptron_1_0123abcd_{uuid.uuid4()}", "1", "1", "x"],
    [],
])
def test_other_processes_are_not_swaptron_stubs(cmdline: list[str]) -> None:
    assert reaper.swaptron_stub(reaper.stub_arguments(cmdline)) is None


def test_prefixes_and_regions_match_only_what_a_server_creates() -> None:
    prefix = reaper.new_prefix()
    assert reaper.PREFIX.fullmatch(prefix)
    assert reaper.REGION.fullmatch(region(prefix))
    for client_ring in ("swaptron_1_in0", "swaptron_12_7f3a2b1c4d50_out3", f"{prefix}junk"):
        assert reaper.REGION.fullmatch(client_ring) is None


@pytest.fixture
def shm_prefix() -> Iterator[str]:
    """A fresh prefix; whatever the test leaves under it in /dev/shm is deleted."""
    prefix = reaper.new_prefix()
    yield prefix
    for path in reaper.SHM_FOLDER.glob(f"{prefix}*"):
        path.unlink(missing_ok=True)


@pytest.fixture
def holder(shm_prefix: str) -> Iterator[None]:
    """A live process naming the prefix, as a running server does: its regions are not stale."""
    process = subprocess.Popen([sys.executable, "-c", SLEEPER, shm_prefix])
    yield
    process.kill()
    process.wait()


@pytest.mark.usefixtures("holder")
def test_only_regions_of_this_user_that_look_like_a_servers_are_removed(shm_prefix: str) -> None:
    server_region = reaper.SHM_FOLDER / region(shm_prefix)
    server_region.write_bytes(b"frames")
    other = reaper.SHM_FOLDER / f"{shm_prefix}junk"
    other.write_bytes(b"not a server's")
    link = reaper.SHM_FOLDER / region(shm_prefix)
    link.symlink_to(other)
    names = [server_region.name, other.name, link.name, "../etc/passwd"]
    assert reaper.remove_regions(names) == [server_region.name]
    assert not server_region.exists() and other.exists() and link.is_symlink()


def test_a_region_is_stale_only_when_no_live_process_names_its_prefix(shm_prefix: str) -> None:
    orphaned = reaper.SHM_FOLDER / region(shm_prefix)
    orphaned.write_bytes(b"")
    holder = subprocess.Popen([sys.executable, "-c", SLEEPER, shm_prefix])
    try:
        assert orphaned.name not in reaper.stale_regions()
    finally:
        holder.kill()
        holder.wait()
    assert orphaned.name in reaper.stale_regions()


def fake_stub(region_name: str, server_pid: int, script: Path) -> subprocess.Popen[bytes]:
    """A process whose command line is a stub's (the Python interpreter runs `script`)."""
    cmdline = stub_cmdline(region_name, server_pid)
    cmdline[1] = str(script)
    return subprocess.Popen(cmdline, executable=sys.executable)


def test_stubs_of_dead_servers_are_killed_and_live_servers_stubs_kept(
        shm_prefix: str, tmp_path: Path) -> None:
    script = tmp_path / "model.py"
    script.write_text(SLEEPER)
    orphan_region, live_region = region(shm_prefix), region(shm_prefix)
    for name in (orphan_region, live_region):
        (reaper.SHM_FOLDER / name).write_bytes(b"")
    orphan = fake_stub(orphan_region, 1, script)  # its server (pid 1 on its line) is not its parent
    live = fake_stub(live_region, os.getpid(), script)  # this process is its server
    try:
        found = reaper.reap_orphans()
        assert orphan.wait(timeout=30) == -9
        assert live.poll() is None and live.pid not in found.stubs
        assert not (reaper.SHM_FOLDER / orphan_region).exists()
        assert (reaper.SHM_FOLDER / live_region).exists()
    finally:
        for process in (orphan, live):
            process.kill()
            process.wait()


def test_a_recycled_pid_is_not_killed() -> None:
    process = subprocess.Popen([sys.executable, "-c", SLEEPER])
    try:
        started = psutil.Process(process.pid).create_time()
        assert reaper.kill_all([reaper.Found(process.pid, started - 1.0)]) == []
        assert process.poll() is None
        found = reaper.Found(process.pid, started)
        assert reaper.kill_all([found]) == [found]
        assert process.wait(timeout=30) == -9
    finally:
        process.kill()
        process.wait()

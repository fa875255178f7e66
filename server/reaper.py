"""No Python-backend stub outlives its server.

Why stubs survived a hard kill: a stub's health thread polls `kill(server, 0)` every 300 ms and,
once the server is gone, destroys the stub's Python state, which needs the GIL. A stub that was
serving holds the GIL in its main thread, blocked in C++ on a shared-memory semaphore for an
answer the dead server never sends; the health thread waits for the GIL forever, and the stub
ignores SIGTERM (its handler skips it). Nothing that runs Python inside the stub can act (it needs
that GIL), and PR_SET_PDEATHSIG cannot be set for a stub: Triton forks it from a model-loading
thread that ends once the model is loaded, which would fire the signal then.

So the killing is done from outside, with SIGKILL:
- a guardian process per server start (`start_guardian`, running `guard`): it waits on a pidfd
  of the tritonserver and, when the server exits for any reason, kills this user's processes left
  in the server's process group (its stubs) and deletes their shared-memory regions (all of the
  prefix's when the launcher is gone too). It runs in a session of its own, so it outlives a
  launcher killed together with its process group;
- `reap_orphans`, run before a server starts: kills this user's stubs that carry a swaptron
  shared-memory prefix and whose server is gone (their parent is no longer the server pid on
  their command line; a live server's stubs are its children), and deletes swaptron regions that
  no live process names.
Each kill goes through a pidfd and a check of the process's start time, so a recycled pid is
never hit, and only processes of this user are considered.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

STUB_NAME = "triton_python_backend_stub"
SHM_FOLDER = Path("/dev/shm")
PREFIX = re.compile(r"swaptron_\d+_[0-9a-f]{8}_")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REGION = re.compile(PREFIX.pattern + UUID)  # the Python backend adds a UUID to the prefix
# the guardian sweeps the dead server's group again after these pauses: a stub being forked when
# the server died appears a moment later
SWEEP_PAUSES_S = (0.0, 0.5, 1.0)
KILL_WAIT_S = 10.0


@dataclass(frozen=True)
class Found:
    """A process to kill: its pid, its start time (its identity) and the region it names."""

    pid: int
    started: float
    region: str | None = None


@dataclass(frozen=True)
class Reaped:
    """What `reap_orphans` or the guardian removed."""

    stubs: list[int]
    regions: list[str]


def new_prefix() -> str:
    """A fresh shared-memory prefix for a server of this process (matches PREFIX)."""
    return f"swaptron_{os.getpid()}_{secrets.token_hex(4)}_"


def stub_arguments(cmdline: Sequence[str]) -> list[str] | None:
    """The stub's arguments (stub path, model, region, sizes, server pid, ...) of a stub process
    or of the `bash -c "exec stub ..."` about to become one; None for any other process."""
    if cmdline and Path(cmdline[0]).name == STUB_NAME:
        return list(cmdline)
    if len(cmdline) == 3 and Path(cmdline[0]).name == "bash" and cmdline[1] == "-c":
        words = cmdline[2].split()
        for index, word in enumerate(words):
            if Path(word).name == STUB_NAME:
                return words[index:]
    return None


def swaptron_stub(arguments: Sequence[str] | None) -> tuple[str, int] | None:
    """(region, server pid) of a stub of a swaptron server; None for any other."""
    if arguments is None or len(arguments) < 6 or not arguments[5].isdigit():
        return None
    if REGION.fullmatch(arguments[2]) is None:
        return None
    return arguments[2], int(arguments[5])


def ours(info: dict[str, Any]) -> bool:
    """True for a process of this user (its real uid)."""
    uids = info.get("uids")
    return uids is not None and uids.real == os.getuid()


def orphan_stubs() -> list[Found]:
    """This user's stubs of swaptron servers whose server is gone."""
    found = []
    for process in psutil.process_iter(["ppid", "uids", "cmdline", "create_time"]):
        info = process.info
        if not ours(info):
            continue
        stub = swaptron_stub(stub_arguments(info["cmdline"] or []))
        if stub is not None and info["ppid"] != stub[1]:
            found.append(Found(process.pid, info["create_time"], stub[0]))
    return found


def group_members(group: int) -> list[Found]:
    """This user's live processes in a process group, but this one."""
    found = []
    for process in psutil.process_iter(["uids", "cmdline", "create_time", "status"]):
        info = process.info
        if (process.pid == os.getpid() or not ours(info)
                or info["status"] in (psutil.STATUS_ZOMBIE, None)):
            continue
        try:
            if os.getpgid(process.pid) != group:
                continue
        except ProcessLookupError:
            continue
        stub = swaptron_stub(stub_arguments(info["cmdline"] or []))
        found.append(Found(process.pid, info["create_time"], stub[0] if stub else None))
    return found


def signal_exactly(found: Found) -> int | None:
    """SIGKILL the process if it still is the one found (same start time); its pidfd, or None."""
    try:
        descriptor = os.pidfd_open(found.pid)
    except ProcessLookupError:
        return None
    try:
        if psutil.Process(found.pid).create_time() == found.started:
            signal.pidfd_send_signal(descriptor, signal.SIGKILL)
            return descriptor
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass
    os.close(descriptor)
    return None


def kill_all(found: Iterable[Found], wait_s: float = KILL_WAIT_S) -> list[Found]:
    """SIGKILL each process that still is the one found and wait (up to `wait_s`) until they
    have exited; the ones killed."""
    killed: dict[int, Found] = {}
    for item in found:
        descriptor = signal_exactly(item)
        if descriptor is not None:
            killed[descriptor] = item
    poller = select.poll()
    for descriptor in killed:
        poller.register(descriptor, select.POLLIN)
    waiting = set(killed)
    deadline = time.monotonic() + wait_s
    while waiting and time.monotonic() < deadline:
        for descriptor, _event in poller.poll(max(deadline - time.monotonic(), 0.0) * 1000):
            poller.unregister(descriptor)
            waiting.discard(descriptor)
    for descriptor in killed:
        os.close(descriptor)
    return list(killed.values())


def remove_regions(names: Iterable[str]) -> list[str]:
    """Delete these swaptron server regions from /dev/shm (this user's plain files only)."""
    removed = []
    for name in names:
        if REGION.fullmatch(name) is None:
            continue
        path = SHM_FOLDER / name
        try:
            info = path.lstat()
            if info.st_uid != os.getuid() or not stat.S_ISREG(info.st_mode):
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(name)
    return removed


def stale_regions() -> list[str]:
    """Swaptron server regions in /dev/shm whose prefix no live process names."""
    try:  # listed before the processes: a region's server started before it was listed
        names = [path.name for path in SHM_FOLDER.iterdir() if REGION.fullmatch(path.name)]
    except FileNotFoundError:
        return []
    live = "\n".join(" ".join(process.info["cmdline"] or [])
                     for process in psutil.process_iter(["cmdline"]))
    stale = []
    for name in names:
        prefix = PREFIX.match(name)
        if prefix is not None and prefix.group(0) not in live:
            stale.append(name)
    return stale


def reap_orphans() -> Reaped:
    """Kill this user's stubs of dead swaptron servers and delete the regions nothing uses."""
    killed = kill_all(orphan_stubs())
    regions = remove_regions(item.region for item in killed if item.region)
    regions += remove_regions(stale_regions())
    return Reaped(sorted(item.pid for item in killed), sorted(set(regions)))


def wait_for_exit(descriptor: int) -> None:
    """Block until the process of a pidfd has exited."""
    poller = select.poll()
    poller.register(descriptor, select.POLLIN)
    while not poller.poll():
        continue


def guard(server_fd: int, server_pid: int, prefix: str, launcher_pid: int) -> Reaped:
    """Wait until the server exits, then kill what is left of its process group and delete the
    regions of what was killed (and every region of the prefix when the launcher is gone: no
    restart will reuse it)."""
    wait_for_exit(server_fd)
    killed: list[Found] = []
    for pause in SWEEP_PAUSES_S:
        time.sleep(pause)
        killed += kill_all(group_members(server_pid))
    regions = remove_regions(item.region for item in killed if item.region)
    if os.getppid() != launcher_pid:
        regions += remove_regions(path.name for path in SHM_FOLDER.glob(f"{prefix}*"))
    return Reaped(sorted(item.pid for item in killed), sorted(set(regions)))


def start_guardian(server_pid: int, prefix: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start the guardian of a server this process has just started (an unreaped child, so its
    pid names it); raises OSError where pidfds are missing (Linux before 5.3)."""
    server_fd = os.pidfd_open(server_pid)
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-m", "swaptron.server.reaper", "--server-fd", str(server_fd),
             "--server-pid", str(server_pid), "--prefix", prefix,
             "--launcher-pid", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(server_fd,), start_new_session=True)
    finally:
        os.close(server_fd)


def stop_guardian(guardian: subprocess.Popen[bytes] | None) -> None:
    """End a guardian whose server is gone and cleaned up, and reap it."""
    if guardian is None:
        return
    guardian.kill()
    guardian.wait(timeout=15.0)


def main(argv: list[str] | None = None) -> int:
    """The guardian process: `python -m swaptron.server.reaper --server-fd ...`."""
    parser = argparse.ArgumentParser(description="kill what a tritonserver leaves behind")
    parser.add_argument("--server-fd", type=int, required=True, help="pidfd of the server")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--prefix", required=True, help="the server's shared-memory prefix")
    parser.add_argument("--launcher-pid", type=int, required=True)
    args = parser.parse_args(argv)
    if PREFIX.fullmatch(args.prefix) is None:
        parser.error(f"--prefix {args.prefix!r} is not a swaptron shared-memory prefix")
    reaped = guard(args.server_fd, args.server_pid, args.prefix, args.launcher_pid)
    if reaped.stubs or reaped.regions:
        print(f"swaptron guardian: tritonserver {args.server_pid} exited; killed "
              f"{len(reaped.stubs)} process(es) it left behind "
              f"({', '.join(map(str, reaped.stubs)) or 'none'}) and deleted "
              f"{len(reaped.regions)} shared-memory region(s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

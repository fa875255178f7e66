"""What the tritonserver process runs with: its allocator, its environment variables, and the
limits it sets on itself before exec.

- the allocator is jemalloc when the machine has it, else glibc told to hand large buffers back
  (`server_allocator`); the Python stubs get neither (`stub_environment_script`);
- each Python-backend stub's shared-memory pool cannot grow past the pool limit: the server runs
  with that file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored), so an oversized request fails
  with "Failed to increase the shared memory pool size" instead of growing a pool that never
  shrinks;
- its address space is capped at the machine's memory (RLIMIT_AS), so an absurd tensor shape
  fails to allocate instead of being touched;
- its files (the pools carry the frames) are created with umask 077, readable by this user only;
- it dies with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import psutil

from swaptron.server.install import wheel_libs_dir

PR_SET_PDEATHSIG = 1
SIG_IGN = 1
MIN_ADDRESS_SPACE = 4 << 30  # the address-space cap never goes below this
JEMALLOC = "libjemalloc.so.2"  # Debian's libjemalloc2 (`make debs`)
JEMALLOC_FOLDERS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"),
                    Path("/usr/lib64"), Path("/usr/lib"), Path("/usr/local/lib"))
# freed pages are kept 10 s for the next frame, then handed back by jemalloc's own thread
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:10000,muzzy_decay_ms:0,narenas:2"
GLIBC_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def jemalloc_path() -> Path | None:
    """Where this machine's jemalloc is, if it has one."""
    return next((folder / JEMALLOC for folder in JEMALLOC_FOLDERS
                 if (folder / JEMALLOC).is_file()), None)


def server_allocator(jemalloc: Path | None) -> dict[str, str]:
    """The malloc settings of the tritonserver process: jemalloc when the machine has it, else
    glibc told to hand every large buffer back.

    gRPC receives a request whole before Triton looks at it (2.51 has no size limit), in buffers
    of up to 4 MB; with glibc's defaults a refused 300 MB frame left about 300 MB in the server's
    heap for good. glibc can only return it by mapping every allocation of 64 KiB or more on its
    own and trimming the heap at once, and then every frame's buffers (request, the tensors
    between steps, the response) are fresh mappings: at 1920x1080 the page faults cost the
    server 27-33 ms of kernel time per frame here. jemalloc keeps freed pages for reuse and hands
    them back after `dirty_decay_ms` (measured: 5 ms of kernel time per 1080p frame, and the
    server's private memory back to 58 MB 12 s after refused 75-300 MB frames).
    """
    if jemalloc is None:
        return dict(GLIBC_MALLOC)
    return {"LD_PRELOAD": str(jemalloc), "MALLOC_CONF": JEMALLOC_CONF}


def server_environment(home: Path, allocator: dict[str, str]) -> dict[str, str]:
    """Environment for tritonserver: its libraries and libpython found, this venv's Python first,
    and its allocator (`server_allocator`). The Python stubs are started by `bash -c`, which
    first runs $BASH_ENV: that script takes the allocator settings away again, so the stubs run
    on glibc's defaults (the glibc settings cost their ONNX Runtime and NumPy a third of their
    throughput).
    """
    env = dict(os.environ)
    python_libdir = sysconfig.get_config_var("LIBDIR") or ""
    library_path = [str(wheel_libs_dir()), python_libdir, env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in library_path if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(allocator)
    env["BASH_ENV"] = str(stub_environment_script(home, allocator))
    return env


def stub_environment_script(home: Path, allocator: dict[str, str]) -> Path:
    """The $BASH_ENV script that takes the server's allocator settings from the Python stubs."""
    names = sorted({*allocator, *GLIBC_MALLOC, "LD_PRELOAD", "MALLOC_CONF"})
    script = home / "stub-environment.sh"
    text = f"unset {' '.join(names)}\n"
    if not script.is_file() or script.read_text() != text:
        partial = script.with_suffix(f".{os.getpid()}.part")
        partial.write_text(text)
        partial.replace(script)
    return script


def child_setup(pool_limit_bytes: int) -> Callable[[], None]:
    """What the server process does before exec: die with its parent, keep its files private,
    cap the size of any file it writes (its shared-memory pools) without dying at the cap, and
    cap its address space at this machine's memory. jemalloc maps with MAP_NORESERVE, so the
    kernel no longer refuses a request for more than the machine has (the 30 GB shape of
    tests/helpers.py's JSON): at the cap the allocation fails as it did under glibc, the server
    exits and the supervisor restarts it, instead of the server touching 30 GB."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here, not in the forked child
    # the server maps about 2.3 GB of address space at rest, the stubs under 0.8 GB each
    address_limit = max(psutil.virtual_memory().total, MIN_ADDRESS_SPACE)
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal.restype = ctypes.c_void_p

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        libc.signal(signal.SIGXFSZ, SIG_IGN)
        os.umask(0o077)
        resource.setrlimit(resource.RLIMIT_FSIZE, (pool_limit_bytes, pool_limit_bytes))
        resource.setrlimit(resource.RLIMIT_AS, (address_limit, address_limit))

    return setup

"""Install the `tritonserver` shipped in the nvidia-pytriton wheel: copy its folder into the cache
once, with the Python-backend stub built for the running Python."""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import tempfile
from pathlib import Path

from swaptron.assets import cache_dir
from swaptron.server.errors import ServerError


def wheel_server_dir() -> Path:
    """The `tritonserver` folder inside the installed nvidia-pytriton wheel."""
    import pytriton

    folder = Path(pytriton.__file__).resolve().parent / "tritonserver"
    if not (folder / "bin" / "tritonserver").is_file():
        raise ServerError(f"{folder}/bin/tritonserver is missing: reinstall nvidia-pytriton==0.7.0")
    return folder


def wheel_libs_dir() -> Path:
    """The shared libraries the wheel's binaries link against (`nvidia_pytriton.libs`)."""
    return wheel_server_dir().parent.parent / "nvidia_pytriton.libs"


def python_tag() -> str:
    """`3.11`-style version of the running Python, as the stub folders are named."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def pytriton_version() -> str:
    """Installed nvidia-pytriton version (names the prepared server folder)."""
    return importlib.metadata.version("nvidia-pytriton")


def prepare_server_home(python_version: str | None = None) -> Path:
    """Copy the wheel's server folder into the cache once, with the backend stub for the Python.

    `python_version` (`3.11`-style) defaults to the running Python, whose stub the server must
    use. Returns the prepared folder (holding `bin/tritonserver` and `backends/`).
    """
    version = python_version or python_tag()
    source = wheel_server_dir()
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        shipped = sorted(p.name for p in (source / "python_backend_stubs").iterdir())
        raise ServerError(
            f"no Python-backend stub for Python {version} in nvidia-pytriton "
            f"(it ships {', '.join(shipped)}): create .venv with one of those Pythons"
        )
    home = cache_dir() / f"tritonserver-{pytriton_version()}-py{version}"
    placed_stub = home / "backends" / "python" / "triton_python_backend_stub"
    if placed_stub.is_file():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tritonserver-", dir=home.parent))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    shutil.copy2(stub, staging / "backends" / "python" / "triton_python_backend_stub")
    if home.exists():
        shutil.rmtree(home)
    staging.replace(home)
    return home

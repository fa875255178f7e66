"""Who may call what: the admin key and the Triton APIs it guards.

Inference over gRPC, health, metadata, model config and statistics stay open (perf_analyzer
cannot send a key over gRPC, and the bench and the clients read statistics). Everything that
changes the server or reads its memory needs the key: the model repository (load/unload),
shared-memory registration (which could map any /dev/shm object, the Python backend's own IPC
regions included), logging and trace. Inference over HTTP needs it too: Triton 2.51's JSON path
sizes a buffer from the declared shape before it reads the data, so a 90-byte request can abort
the server, and our clients speak gRPC.

The key comes from `SWAPTRON_ADMIN_KEY`, or from a file that `swaptron serve` creates once with
mode 0600 in the cache folder; the same lists are written into docker-compose.yml (a test
checks they agree).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from swaptron.assets import cache_dir

ADMIN_KEY_ENV = "SWAPTRON_ADMIN_KEY"
ADMIN_KEY_FILE = "admin-key"
ADMIN_HEADER = "admin-key"  # HTTP header; gRPC metadata is GRPC_METADATA_PREFIX + ADMIN_HEADER
GRPC_METADATA_PREFIX = "triton-grpc-protocol-"
LOCKED_GRPC = ("model-repository", "shared-memory", "logging", "trace")
LOCKED_HTTP = ("inference", *LOCKED_GRPC)
MIN_KEY_LENGTH = 16


class AccessError(RuntimeError):
    """The admin key cannot be read or is unsafe; the message says how to fix it."""


def key_file() -> Path:
    """Where the generated admin key lives."""
    return cache_dir() / ADMIN_KEY_FILE


def check_key(key: str, origin: str) -> str:
    """The key, stripped; AccessError when it is too short or not printable ASCII."""
    key = key.strip()
    if len(key) < MIN_KEY_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
        raise AccessError(f"the admin key from {origin} must be at least {MIN_KEY_LENGTH} "
                          "printable ASCII characters without spaces (e.g. "
                          "`openssl rand -hex 16`)")
    return key


def read_key_file(path: Path) -> str:
    """The key stored in `path`; AccessError when others can read it or it is not ours."""
    info = path.stat()
    if info.st_uid != os.getuid():
        raise AccessError(f"{path} belongs to another user: delete it or set {ADMIN_KEY_ENV}")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise AccessError(f"{path} is readable by other users: `chmod 600 {path}` "
                          "(or delete it to get a new key)")
    return check_key(path.read_text(), str(path))


def admin_key(create: bool = False) -> str | None:
    """`SWAPTRON_ADMIN_KEY`, else the key file; with `create`, a new key file when none exists.

    Returns None when there is no key and `create` is false.
    """
    from_env = os.environ.get(ADMIN_KEY_ENV)
    if from_env:
        return check_key(from_env, ADMIN_KEY_ENV)
    path = key_file()
    if path.is_file():
        return read_key_file(path)
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(16)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return read_key_file(path)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(key + "\n")
    return key


def http_headers(key: str | None) -> dict[str, str]:
    """HTTP headers that carry the admin key (none without a key)."""
    return {ADMIN_HEADER: key} if key else {}


def grpc_metadata(key: str | None) -> dict[str, str]:
    """gRPC metadata that carries the admin key (none without a key)."""
    return {GRPC_METADATA_PREFIX + ADMIN_HEADER: key} if key else {}


def restriction_arguments(key: str) -> list[str]:
    """tritonserver flags that put the locked APIs behind the key."""
    return [f"--grpc-restricted-protocol={','.join(LOCKED_GRPC)}:{ADMIN_HEADER}={key}",
            f"--http-restricted-api={','.join(LOCKED_HTTP)}:{ADMIN_HEADER}={key}"]

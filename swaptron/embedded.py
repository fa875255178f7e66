"""An embedded server for one command: export the default repository if needed, serve it on
free local ports, stop it afterwards (`swaptron demo`, `swaptron scan`, `swaptron web`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from swaptron.export.build import ExportError, export_repository
from swaptron.export.repository import ServingOptions
from swaptron.networks.pipeline import PipelineOptions
from swaptron.server.launcher import ServerError, TritonServer, free_ports


@contextmanager
def embedded_server(repository: Path, pipeline: PipelineOptions | None = None,
                    log_path: Path | None = None, needs: tuple[str, ...] = (),
                    progress: Callable[[str], None] | None = None) -> Iterator[TritonServer]:
    """A supervised server on `repository`, exported first (a no-op when current); ServerError
    when the export fails or lacks one of the models `needs` names."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        export_repository(pipeline or PipelineOptions(), ServingOptions(), repository,
                          progress=say)
    except ExportError as error:
        raise ServerError(f"cannot export the models: {error}") from error
    missing = [name for name in needs if not (repository / name / "config.pbtxt").is_file()]
    if missing:
        raise ServerError(f"{', '.join(missing)} is not exported: it needs a forgery detector "
                          "(weights/forensics; `make forensics-weights` builds them)")
    server = TritonServer(repository, ports=free_ports(), log_path=log_path, supervise=True,
                          on_event=say)
    say(f"starting tritonserver (log: {server.log_path})")
    with server:
        yield server

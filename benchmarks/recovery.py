"""What a crashed stub costs every stream: the time from killing the detector's Python stub
until a frame is swapped again."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from swaptron import assets
from swaptron.specs import DETECTOR, ENSEMBLE, FRAME

if TYPE_CHECKING:
    from swaptron.server.launcher import TritonServer


def measure_recovery(server: TritonServer, video: Path, timeout_s: float = 60.0
                     ) -> dict[str, object]:
    """Kill the detector's Python stub (SIGKILL) and time until a frame is swapped again.

    The supervisor restarts the server; this is the outage a stub crash costs every stream.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from swaptron.server.launcher import stub_models

    frame = assets.read_frames(video, [assets.ANCHOR_FRAME])[0][None]
    victims = [pid for pid, model in stub_models(server.pid or 0).items() if model == DETECTOR]
    if not victims:
        return {"seconds": None, "error": "no detector stub found"}
    killed = time.monotonic()
    os.kill(victims[0], signal.SIGKILL)
    while time.monotonic() - killed < timeout_s:
        try:
            with grpcclient.InferenceServerClient(server.grpc_url) as client:
                tensor = grpcclient.InferInput(FRAME, list(frame.shape), "UINT8")
                tensor.set_data_from_numpy(frame)
                client.infer(ENSEMBLE, [tensor])
            break
        except (InferenceServerException, ConnectionError):
            time.sleep(0.05)
    else:
        return {"seconds": None, "error": f"not serving {timeout_s:.0f} s after the kill"}
    seconds = round(time.monotonic() - killed, 2)
    return {"seconds": seconds, "what": "SIGKILL of the detector's Python stub, until a frame "
            "is swapped again (the supervisor restarts the server)",
            "supervisor": [asdict(r) for r in server.recoveries]}

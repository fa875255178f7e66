"""The forgery detector as served: whether it is there, and what the scan service and the
checked stream cost."""

from __future__ import annotations

from swaptron.benchmarks import clients
from swaptron.benchmarks.plan import BenchPlan
from swaptron.benchmarks.profiles import profile_model
from swaptron.benchmarks.state import Collected, MeasureContext
from swaptron.benchmarks.streams import run_client
from swaptron.specs import CHECKED, ENSEMBLE, SCAN


def serves(url: str, model: str) -> bool:
    """True when the server has the model loaded and ready."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        with grpcclient.InferenceServerClient(url) as client:
            return bool(client.is_model_ready(model))
    except InferenceServerException:
        return False


def measure_forensics(url: str, plan: BenchPlan, context: MeasureContext,
                      found: Collected) -> None:
    """The scan service and the check: perf_analyzer on `scan` and `faceswap_checked` (the same
    frames as `faceswap`), `swaptron scan` of the demo video, and a realtime 24 FPS stream through
    `faceswap_checked` (what the check costs beside the plain realtime run)."""
    for model in (SCAN, CHECKED):
        profile_model(url, "default", model, plan.variant_levels,
                      context.input_files[ENSEMBLE], plan, context, found)
    run_client(clients.checked_run(plan.client_seconds), url, context.video, context.work,
               found, context.say)
    found.scan = clients.scan_throughput(url, context.video)
    context.say(f"swaptron scan: {found.scan.get('frames_per_second')} frames/s, verdict "
                f"{found.scan.get('verdict')}")

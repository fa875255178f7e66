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
    found.scan = {**clients.scan_throughput(url, context.video), **per_face_cost()}
    context.say(f"swaptron scan: {found.scan.get('frames_per_second')} frames/s, verdict "
                f"{found.scan.get('verdict')}; the forensics graph "
                f"{found.scan.get('card_ms_per_face_served_graph')} ms per face (card)")


def per_face_cost() -> dict[str, object]:
    """The served detector's cost of scoring one face, as `swaptron forensics evaluate`
    measured it (ONNX Runtime, 1 thread): the detector alone and the whole `forensics` graph
    (crop, detector, calibration, domain facts); empty without a card."""
    from swaptron.assets import default_forensic_detector, forensics_card

    card = forensics_card() or {}
    entry = card.get("models", {}).get(default_forensic_detector(), {})  # type: ignore[union-attr]
    return {f"card_{key}": entry[key] for key in ("ms_per_face", "ms_per_face_served_graph")
            if key in entry}

"""Workarounds for faults of the Triton server swaptron runs on: tritonserver 2.51, the one
nvidia-pytriton 0.7.0 ships (the embedded server) and NVIDIA's 24.10 image (docker-compose.yml).

Each workaround is one named item (WORKAROUNDS) whose docstring says the version it is for, what
goes wrong without it, and the tests that fail without it (`file::test`, checked to exist by
tests/unit/test_layers.py). The specs (swaptron/specs.py) and the wiring (swaptron/wiring.py)
call them where the fault would strike; a newer Triton may make one unneeded, and its tests say
whether it did.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from swaptron.specs import ModelSpec, TensorSpec
    from swaptron.wiring import EnsembleStep

PUBLISHED_SUFFIX = "_PUBLISHED"  # the name of a published copy: its output's, then this


def published(tensor: TensorSpec) -> TensorSpec:
    """The published copy of an output: `<NAME>_PUBLISHED`, identical, read by nothing but the
    ensemble's output.

    For tritonserver 2.51 (nvidia-pytriton 0.7.0). Without it: when a request asks an ensemble for
    some outputs only, Triton prunes the steps it does not need, and it drops a requested output
    when every step consuming it is pruned (asking `faceswap` for FACES alone failed with
    "unexpected deadlock"). So an output that the ensemble returns and that a later step also
    reads is emitted twice (ModelSpec.publishes): as itself, for the later step, and as this
    copy, which feeds nothing and so is never dropped (swaptron.wiring routes it).
    Proved by (they fail without it):
    tests/unit/test_configs.py::test_no_ensemble_output_feeds_a_later_step
    tests/test_faceswap_server.py::test_any_set_of_outputs_can_be_asked_for_alone
    """
    return replace(tensor, name=tensor.name + PUBLISHED_SUFFIX, optional=False)


def copy_sources(spec: ModelSpec) -> list[int]:
    """For each published copy of a network (see `published`), the position of the network
    output it copies: the graph appends the copies after its own outputs."""
    names = [t.name for t in spec.network_outputs]
    return [names.index(name) for name in spec.publishes]


def passed_through_selector(faces: TensorSpec) -> tuple[TensorSpec]:
    """What the selector takes and passes on unchanged besides the request's choices: FACES, so
    that the landmarker waits for the selector and every ensemble is a chain.

    For tritonserver 2.51 (nvidia-pytriton 0.7.0). Without it: when one step of a request fails
    (the selector refusing an unknown IDENTITY) while another step of the same request runs,
    Triton releases the request's inputs under the running step and the server dies (SIGSEGV in
    the Python backend, found with unknown identities among concurrent requests). In a chain no
    two steps of a request run at once, so a refusal leaves nothing running.
    Proved by (they fail without it):
    tests/unit/test_configs.py::test_every_ensemble_is_a_chain_so_a_refusal_leaves_nothing_running
    tests/test_identities.py::test_an_unknown_identity_fails_alone_and_the_others_are_served
    """
    return (faces,)


def sole_reader_first(ensemble: str, steps: Sequence[EnsembleStep], inputs: set[str]
                      ) -> list[EnsembleStep]:
    """The wired steps of an ensemble in the order its config lists them: the step that alone
    reads an ensemble input first (the selector, sole reader of IDENTITY and WHICH_FACES), the
    others in wiring order. ValueError naming them when two steps are sole readers.

    For tritonserver 2.51 (nvidia-pytriton 0.7.0). Without it: when a request asks for some
    outputs only, Triton prunes the steps it does not need and charges an ensemble input that no
    kept step reads to the config's first step as if that step had produced it: asking
    `faceswap` for FACES alone pruned the detector once the selector was pruned ("unexpected
    deadlock"). With the sole reader first, the charge falls on a step already pruned.
    Proved by (they fail without it):
    tests/unit/test_configs.py::test_the_sole_reader_of_an_ensemble_input_is_listed_first
    tests/test_faceswap_server.py::test_any_set_of_outputs_can_be_asked_for_alone
    """
    readers = {name: sum(name in s.input_map.values() for s in steps) for name in inputs}
    sole = [s for s in steps if any(readers.get(name) == 1 for name in s.input_map.values())]
    if len(sole) > 1:
        raise ValueError(f"{ensemble}: {', '.join(s.model for s in sole)} each read an "
                         "ensemble input alone; only one can be listed first")
    first = sole[0] if sole else steps[0]
    return [first, *(s for s in steps if s is not first)]


def candidate_sequences(max_streams: int, python: bool) -> int:
    """The sequence batcher's candidate slots (`max_candidate_sequences`) of a model keeping
    `max_streams` streams: twice as many where the model itself keeps them (`python`: the
    python-ort stub, the tracker, the sampler), so a stream past the limit reaches the model and
    gets its error (swaptron.specs.STREAM_LIMIT_ERROR); as many where the backend keeps the state.

    For tritonserver 2.51 (nvidia-pytriton 0.7.0). Without it: a stream past the slots waits in
    the sequence batcher's backlog, which has no bound and no error (tried), so its client waits
    in silence instead of being told that the server has no room.
    Proved by (they fail without it):
    tests/unit/test_configs.py::test_the_tracker_is_a_sequence_batched_python_model_on_every_target
    tests/test_stabilizer.py::test_streams_past_the_limit_are_refused_until_one_ends
    """
    return max_streams * (2 if python else 1)


WORKAROUNDS = (published, passed_through_selector, sole_reader_first, candidate_sequences)

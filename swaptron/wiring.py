"""How the ensembles are wired: their steps in order, and each step's inputs and outputs mapped
to ensemble tensors by name, from the model specs (swaptron/specs.py).

`swaptron export` writes each ensemble's config from these (export/repository.py); the
workarounds for Triton 2.51's ensemble scheduler that shape the wiring are named in
swaptron/triton_workarounds.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from swaptron.specs import (
    CHECKED,
    DETECTOR,
    DFM_ROUTER,
    ENSEMBLE,
    FORENSICS,
    FRAME,
    LANDMARKER,
    MARK_READER,
    SAMPLER,
    SCAN,
    SELECTOR,
    STABILIZER,
    STREAM,
    STREAM_CHECKED,
    SWAPPED,
    SWAPPER,
    TRACKER,
    ModelSpec,
    TensorSpec,
    frame,
    model_specs,
    request_choices,
)
from swaptron.triton_workarounds import PUBLISHED_SUFFIX, sole_reader_first


@dataclass(frozen=True)
class EnsembleStep:
    """One step of the ensemble: model, and maps from its tensor names to ensemble tensors."""

    model: str
    input_map: dict[str, str]
    output_map: dict[str, str]


@dataclass(frozen=True)
class Step:
    """A model in an ensemble; `sources` maps an input to the tensor it takes when that is not
    the latest tensor of its own name (the checked ensemble scores SWAPPED as its FRAME)."""

    model: ModelSpec
    sources: tuple[tuple[str, str], ...] = ()

    def source(self, name: str) -> str:
        """The tensor name an input takes."""
        return dict(self.sources).get(name, name)


@dataclass(frozen=True)
class EnsembleSpec:
    """An ensemble: its steps in order, and its inputs and outputs (batch axis included)."""

    name: str
    steps: tuple[Step, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def wiring(self) -> list[EnsembleStep]:
        """The ensemble's steps, wired by name: each model input takes the latest tensor of
        its source's name (an ensemble input or an earlier step's output). An ensemble output
        comes from the last step that produces its name: directly when nothing later consumes
        it, else through that step's published copy (triton_workarounds.published); every
        other output is an internal tensor (the lower-case name, with the model's name appended
        when an earlier step already took it). ValueError when an ensemble output feeds a later
        step and its model does not publish a copy."""
        public = {t.name for t in self.outputs}
        last_producer = {step.model.ensemble_name(t.name): position
                         for position, step in enumerate(self.steps)
                         for t in step.model.network_outputs}
        latest = {t.name: t.name for t in self.inputs}
        taken = set(latest)
        steps = []
        for position, step in enumerate(self.steps):
            spec = step.model
            input_map = {t.name: latest[step.source(t.name)] for t in spec.inputs}
            consumed_later = {later.source(t.name) for later in self.steps[position + 1:]
                              for t in later.model.inputs}
            output_map = {}
            for tensor in spec.network_outputs:
                name = spec.ensemble_name(tensor.name)
                publish = name in public and last_producer[name] == position
                direct = publish and name not in consumed_later
                internal = name.lower()
                if internal in taken:
                    internal = f"{internal}_{spec.name}"
                output_map[tensor.name] = name if direct else internal
                latest[name] = output_map[tensor.name]
                taken.add(latest[name])
                if publish and not direct:
                    if tensor.name not in spec.publishes:
                        raise ValueError(f"{self.name}: {spec.name} must publish {name}, an "
                                         "output that a later step also reads")
                    output_map[tensor.name + PUBLISHED_SUFFIX] = name
            steps.append(EnsembleStep(spec.name, input_map, output_map))
        return steps

    def config_steps(self) -> list[EnsembleStep]:
        """The wired steps in the order the config lists them: the sole reader of an ensemble
        input first (triton_workarounds.sole_reader_first). ValueError when two steps are sole
        readers."""
        return sole_reader_first(self.name, self.wiring(), {t.name for t in self.inputs})


def with_batch_axis(tensor: TensorSpec) -> TensorSpec:
    """The tensor as a non-batching model declares it: the batch axis is a dim of its own."""
    return TensorSpec(tensor.name, tensor.triton_type, (-1, *tensor.dims), tensor.optional)


def ensemble(name: str, steps: tuple[Step, ...], outputs: tuple[TensorSpec, ...]
             ) -> EnsembleSpec:
    """An ensemble of FRAME in (and the request's choices when it swaps), the given outputs
    out, batch axis included."""
    routed = any(s.model.name == DFM_ROUTER for s in steps)
    choices = request_choices(routed) if any(s.model.name == SELECTOR for s in steps) else ()
    return EnsembleSpec(name, steps, tuple(with_batch_axis(t) for t in (frame(), *choices)),
                        tuple(with_batch_axis(t) for t in outputs))


def swap_outputs(specs: dict[str, ModelSpec], *extra: TensorSpec) -> tuple[TensorSpec, ...]:
    """What a swapping ensemble returns: SWAPPED, FACES and LANDMARKS, then `extra`."""
    return (frame(SWAPPED), specs[DETECTOR].network_outputs[0],
            specs[LANDMARKER].network_outputs[0], *extra)


def swap_steps(specs: dict[str, ModelSpec], stateful: bool) -> tuple[Step, ...]:
    """detector -> selector -> landmarker -> swapper; a stream (stateful): tracker (the
    detector on keyframes, the landmarker on every frame) -> selector -> stabilizer ->
    swapper. With DFM models (the router in `specs`) the router is the swap step: it calls the
    swapper or a DFM's models for each frame."""
    swap = DFM_ROUTER if DFM_ROUTER in specs else SWAPPER
    names = ((TRACKER, SELECTOR, STABILIZER, swap) if stateful
             else (DETECTOR, SELECTOR, LANDMARKER, swap))
    return tuple(Step(specs[name]) for name in names)


def faceswap_ensemble(max_faces: int, stateful: bool = False, dfm: bool = False
                      ) -> EnsembleSpec:
    """`faceswap`: detector -> landmarker -> swapper; FRAME in, SWAPPED, FACES, LANDMARKS out.
    `faceswap_stream` (stateful): the stabilizer between landmarker and swapper, so FACES and
    LANDMARKS are the stabilizer's; requests need a sequence id (one per video stream). `dfm`:
    the DFM router swaps, and requests may carry MORPH."""
    specs = model_specs(max_faces, dfm)
    return ensemble(STREAM if stateful else ENSEMBLE, swap_steps(specs, stateful),
                    swap_outputs(specs))


def scan_ensemble(max_faces: int) -> EnsembleSpec:
    """`scan`: detector -> landmarker -> mark reader -> forensics (PRESENCE passes through the
    reader); FACES, LANDMARKS, FAKE_SCORE and MARK (the invisible mark's soft bits, its own
    output beside the score) out."""
    specs = model_specs(max_faces)
    names = (DETECTOR, LANDMARKER, MARK_READER, FORENSICS)
    outputs = tuple(specs[name].network_outputs[0]
                    for name in (DETECTOR, LANDMARKER, FORENSICS, MARK_READER))
    return ensemble(SCAN, tuple(Step(specs[name]) for name in names), outputs)


def checked_ensemble(max_faces: int, stateful: bool = False, dfm: bool = False
                     ) -> EnsembleSpec:
    """`faceswap_checked` (`faceswap_stream_checked`): `faceswap` (`faceswap_stream`), then
    `forensics` (a stream: `sampler`, which calls it every few frames) on the swapped frame
    (with the landmarks of the original, which the swap keeps): the outputs of the swap plus
    FAKE_SCORE of the result."""
    specs = model_specs(max_faces, dfm)
    scorer = SAMPLER if stateful else FORENSICS  # a stream's scores are sampled
    steps = (*swap_steps(specs, stateful), Step(specs[scorer], ((FRAME, SWAPPED),)))
    return ensemble(STREAM_CHECKED if stateful else CHECKED, steps,
                    swap_outputs(specs, specs[FORENSICS].network_outputs[0]))


def ensembles(max_faces: int, forensics: bool, dfm: bool = False) -> list[EnsembleSpec]:
    """The ensembles of a repository (the scan and checked ones when a detector is exported;
    `dfm`: the swapping ones route through the DFM router)."""
    found = [faceswap_ensemble(max_faces, dfm=dfm),
             faceswap_ensemble(max_faces, stateful=True, dfm=dfm)]
    if forensics:
        found += [scan_ensemble(max_faces), checked_ensemble(max_faces, dfm=dfm),
                  checked_ensemble(max_faces, stateful=True, dfm=dfm)]
    return found

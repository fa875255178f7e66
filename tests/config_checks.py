"""How a test checks a repository's ensemble wiring (shared by the unit and export tests)."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from swaptron.specs import ENSEMBLE


def check_ensemble(configs: dict[str, mc.ModelConfig], name: str = ENSEMBLE) -> None:
    """Each step maps exactly its model's inputs and only its outputs, the steps form a graph
    that can run (in any listed order), and every ensemble tensor has one producer."""
    ensemble = configs[name]
    available = {tensor.name for tensor in ensemble.input}
    produced_names = [value for step in ensemble.ensemble_scheduling.step
                      for value in step.output_map.values()]
    assert len(produced_names) == len(set(produced_names)), produced_names
    pending = list(ensemble.ensemble_scheduling.step)
    while pending:
        runnable = [s for s in pending if set(s.input_map.values()) <= available]
        assert runnable, f"no step can run: {[s.model_name for s in pending]} wait for inputs"
        step = runnable[0]
        pending.remove(step)
        model = configs[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}, step.model_name
        assert set(step.output_map) <= {t.name for t in model.output}, step.model_name
        for name, value in step.output_map.items():
            produced = next(t for t in model.output if t.name == name)
            for output in ensemble.output:
                if output.name == value:
                    assert output.data_type == produced.data_type
                    dims = list(output.dims)[1:] if ensemble.max_batch_size == 0 else output.dims
                    assert list(dims) == list(produced.dims)
        available |= set(step.output_map.values())
    assert {t.name for t in ensemble.output} <= available
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        for name, value in step.input_map.items():
            wanted = next(t for t in model.input if t.name == name)
            source = [t for t in ensemble.input if t.name == value]
            if source:
                assert source[0].data_type == wanted.data_type

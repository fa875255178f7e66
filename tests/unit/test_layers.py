"""The layout is the architecture: imports only run downward, and no tensor name is typed
outside the specs."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

from swaptron.triton_workarounds import WORKAROUNDS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {  # folder -> package
    "swaptron": "swaptron", "networks": "swaptron.networks", "export": "swaptron.export",
    "training": "swaptron.training", "server": "swaptron.server", "client": "swaptron.client",
    "benchmarks": "swaptron.benchmarks", "web": "swaptron.web",
}
# the contract (specs, with the refusal words it shares with the selector), the ensembles'
# wiring and the Triton workarounds both build on, and the shared helpers
BASE = {"swaptron.arguments", "swaptron.assets", "swaptron.specs", "swaptron.weights",
        "swaptron.refusals", "swaptron.triton_workarounds", "swaptron.wiring",
        "swaptron.mark_code", "swaptron.verdicts"}
# what each layer may import from swaptron (besides its own package)
ALLOWED = {
    "swaptron.networks": BASE,
    "swaptron.export": BASE | {"swaptron.networks", "swaptron.server.ort_session"},
    "swaptron.training": BASE | {"swaptron.networks"},
    "swaptron.server": BASE,
    "swaptron.client": BASE | {"swaptron.server.access"},
    # the gateway and page sit on the client; its command starts the embedded server as demo does
    "swaptron.web": BASE | {"swaptron.client", "swaptron.server.launcher", "swaptron.embedded",
                            "swaptron.demo", "swaptron.networks.pipeline"},
}
TOP = {"swaptron.cli", "swaptron.demo", "swaptron.doctor", "swaptron.__main__",
       "swaptron.embedded", "swaptron.scan"}
TENSOR_NAME = re.compile(r"""["'](FRAME|SWAPPED|FACES|KEYPOINTS|LANDMARKS|PRESENCE)["']""")


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    """The swaptron modules a file imports (at any depth in the file): `from a import b` counts
    as a.b when that is a module, else as a."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("swaptron"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in known else node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("swaptron"))
    return names & known


def allowed(importer: str, target: str) -> bool:
    """Whether `importer` may import `target`."""
    package = next((p for p in ALLOWED if importer == p or importer.startswith(p + ".")), None)
    if importer in TOP or (package is None and importer not in BASE):
        return True  # the command and the benchmarks sit on top of everything
    if package is None:  # a base module: only other base modules
        return any(target == b or target.startswith(b + ".") for b in BASE) or target in (
            "swaptron",)
    own = target == package or target.startswith(package + ".")
    return own or target == "swaptron" or any(
        target == a or target.startswith(a + ".") for a in ALLOWED[package])


def test_imports_only_run_downward() -> None:
    known = modules()
    wrong = [f"{name} imports {target}" for name, path in known.items()
             for target in sorted(imported(path, set(known))) if not allowed(name, target)]
    assert wrong == []


def test_no_tensor_name_is_typed_outside_the_specs() -> None:
    typed = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for name, path in modules().items() if name != "swaptron.specs"
             for number, line in enumerate(path.read_text().splitlines(), start=1)
             if TENSOR_NAME.search(line)]
    assert typed == []


def test_the_rules_refuse_upward_and_sideways_imports() -> None:
    assert not allowed("swaptron.training.extract", "swaptron.export.onnx_export")
    assert not allowed("swaptron.export.build", "swaptron.training.train")
    assert not allowed("swaptron.networks.swapper", "swaptron.export.repository")
    assert not allowed("swaptron.specs", "swaptron.networks.detector")
    assert not allowed("swaptron.client.stream", "swaptron.networks.swapper")
    assert allowed("swaptron.export.build", "swaptron.networks.pipeline")
    assert allowed("swaptron.benchmarks.bench", "swaptron.export.build")
    assert not allowed("swaptron.wiring", "swaptron.export.repository")
    assert not allowed("swaptron.triton_workarounds", "swaptron.server.ort_model")
    assert allowed("swaptron.export.repository", "swaptron.wiring")
    assert allowed("swaptron.server.ort_checks", "swaptron.specs")


def test_the_new_modules_are_under_the_rules() -> None:
    known = modules()
    assert {"swaptron.wiring", "swaptron.triton_workarounds", "swaptron.refusals"} <= set(known)
    assert {"swaptron.wiring", "swaptron.triton_workarounds", "swaptron.refusals"} <= BASE


def test_each_triton_workaround_names_its_version_its_fault_and_tests_that_exist() -> None:
    for item in WORKAROUNDS:
        doc = inspect.getdoc(item) or ""
        assert "tritonserver 2.51 (nvidia-pytriton 0.7.0)" in doc, item.__name__
        assert "Without it:" in doc and "Proved by" in doc, item.__name__
        proofs = re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", doc)
        assert proofs, item.__name__
        for file, name in proofs:
            assert f"def {name}(" in (ROOT / file).read_text(), (item.__name__, file, name)


def test_what_the_stubs_import_loads_no_grpc_protobuf_or_torch() -> None:
    # every Python-backend stub imports these; each heavy module costs every stub its memory
    stub_modules = ["swaptron.server.ort_session", "swaptron.server.ort_checks",
                    "swaptron.server.stream_states"]
    probe = ("import sys; " + "; ".join(f"import {name}" for name in stub_modules)
             + "; print(sorted({m.split('.')[0] for m in sys.modules}"
             " & {'grpc', 'tritonclient', 'google', 'torch'}))")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert shown == "[]", shown

"""docker-compose.yml: validated by the real `docker-compose`, and the repositories it serves.

The compose checks run `docker-compose config` (no Docker engine is needed for it). Which services
`up` starts comes from Compose itself: `config --services` on Compose 2, and on docker-compose 1
(which does not filter that listing by profile) its own profile and dependency code, run in its
own interpreter without a daemon. The repository checks export real repositories and read them
the way NVIDIA's container will: configs with Triton's protobuf, graphs with `onnx`, and the
TensorRT build script run with stand-ins for `trtexec` and `nvidia-smi`, the two tools that need
a GPU.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from swaptron.assets import REPO_ROOT
from swaptron.export.build import export_repository
from swaptron.export.cli import DEFAULT_OUTPUTS
from swaptron.export.pipeline import PipelineOptions
from swaptron.export.repository import WARMUP_FOLDER, ServingOptions, parse_config
from swaptron.export.specs import FRAME_MAX_SIDE, FRAME_MIN_SIDE
from swaptron.export.tensorrt import ENGINE_SCRIPT, MANIFEST
from swaptron.server import access
from swaptron.server.launcher import TritonServer, free_ports

from helpers import ABORTING_JSON, http_status, locked_api_answers

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
ADMIN_KEY = "test-admin-key-0123"
SERVERS = ("triton", "triton-cpu")
PROFILES = ("gpu", "cpu", "client")
PORTS = (8000, 8001, 8002)
ONNX_TYPES = {"TYPE_UINT8": onnx.TensorProto.UINT8, "TYPE_FP32": onnx.TensorProto.FLOAT,
              "TYPE_FP16": onnx.TensorProto.FLOAT16}
BYTES_PER_ITEM = {"TYPE_UINT8": 1, "TYPE_FP32": 4, "TYPE_FP16": 2}

# docker-compose 1 has no daemon-free "which services would start": run its own code for it
# (profile resolution from --profile / COMPOSE_PROFILES / .env, then Project.get_services, the
# selection `up` makes, dependencies included).
V1_SELECTION = """
import json, sys
from compose.cli.command import get_profiles_from_options
from compose.config import config
from compose.config.environment import Environment
from compose.project import Project
from compose.service import Service
project_dir, *flags = sys.argv[1:]
environment = Environment.from_env_file(project_dir)
data = config.load(config.find(project_dir, None, environment))
profiles = get_profiles_from_options({"--profile": flags}, environment)
services = [Service(s["name"], project="swaptron",
                    **{k: v for k, v in s.items() if k not in ("name", "networks")})
            for s in data.services]
project = Project("swaptron", services, None, enabled_profiles=profiles)
print(json.dumps([s.name for s in project.get_services(include_deps=True)]))
"""
YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


@dataclass(frozen=True)
class Compose:
    """The docker-compose binary; `python` is its interpreter on docker-compose 1 (a script)."""

    binary: str
    python: list[str] | None

    def run(self, flags: list[str], args: list[str], env: dict[str, str]
            ) -> subprocess.CompletedProcess[str]:
        """`docker-compose -f docker-compose.yml FLAGS ARGS` in the repository root."""
        return subprocess.run([self.binary, "-f", str(COMPOSE_FILE), *flags, *args],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=60, check=False)

    def config(self, env: dict[str, str]) -> dict:
        """The resolved compose file with every profile on, as `docker-compose config` prints it."""
        every_profile = [part for name in PROFILES for part in ("--profile", name)]
        json_output = [] if self.python else ["--format", "json"]
        result = self.run(every_profile, ["config", *json_output], env)
        assert result.returncode == 0, result.stderr
        if not self.python:
            return json.loads(result.stdout)
        converted = subprocess.run([*self.python, "-c", YAML_TO_JSON], input=result.stdout,
                                   capture_output=True, text=True, timeout=60, check=True)
        return json.loads(converted.stdout)

    def started(self, env: dict[str, str], profiles: list[str]) -> set[str]:
        """Services `docker-compose [--profile P ...] up` starts."""
        flags = [part for profile in profiles for part in ("--profile", profile)]
        if not self.python:
            result = self.run(flags, ["config", "--services"], env)
            assert result.returncode == 0, result.stderr
            return set(result.stdout.split())
        result = subprocess.run([*self.python, "-c", V1_SELECTION, str(REPO_ROOT), *profiles],
                                env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return set(json.loads(result.stdout))


def script_interpreter(binary: str) -> list[str] | None:
    """The `#!` interpreter of a Python script (docker-compose 1), None for a binary."""
    with Path(binary).open("rb") as file:
        first = file.readline(200)
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    return first[2:].decode().split()


@pytest.fixture(scope="module")
def compose() -> Compose:
    """docker-compose on this machine (Debian's package, which `make test` installs)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (make debs installs Debian's package)")
    return Compose(binary, script_interpreter(binary))


def compose_env(**overrides: str) -> dict[str, str]:
    """This environment without any COMPOSE_*/SWAPTRON_* setting, plus the given ones."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPOSE_", "SWAPTRON_", "DOCKER_"))}
    env.update({"SWAPTRON_ADMIN_KEY": ADMIN_KEY, **overrides})
    return env


@pytest.fixture(scope="module")
def services(compose: Compose) -> dict[str, dict]:
    """Services of the resolved compose file with the default environment."""
    return compose.config(compose_env())["services"]


def published(service: dict) -> set[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port, short or long form."""
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
        else:
            address, host, container = port.split("/")[0].rsplit(":", 2)
            ports.add((address, int(host), int(container)))
    return ports


def size_in_bytes(text: str | int) -> int:
    """`1gb` / `1g` / `1073741824` -> bytes."""
    value = str(text).lower().rstrip("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    if value and value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(value)


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """Container path -> (host path, read-only) of each bind mount."""
    found = {}
    for volume in service["volumes"]:
        assert volume["type"] == "bind"
        found[volume["target"]] = (volume["source"], bool(volume.get("read_only", False)))
    return found


def gpu_devices(service: dict) -> list[dict]:
    """The device reservations of a service."""
    deploy = service.get("deploy") or {}
    return deploy.get("resources", {}).get("reservations", {}).get("devices", [])


def flag_values(command: list[str], flag: str) -> list[str]:
    """Values of every `--flag=value` in a command."""
    return [part.split("=", 1)[1] for part in command if part.startswith(f"{flag}=")]


def test_compose_file_validates(compose: Compose) -> None:
    for flags in ([], ["--profile", "cpu"], ["--profile", "client"]):
        result = compose.run(flags, ["config", "--quiet"], compose_env())
        assert result.returncode == 0, (flags, result.stderr)


def test_documented_commands_start_the_right_services(compose: Compose) -> None:
    assert compose.started(compose_env(), []) == {"engines", "triton"}
    assert compose.started(compose_env(), ["cpu"]) == {"triton-cpu"}
    assert compose.started(compose_env(), ["client"]) == {"client"}
    assert compose.started(compose_env(COMPOSE_PROFILES="cpu"), []) == {"triton-cpu"}


def test_every_service_is_behind_a_profile(services: dict[str, dict]) -> None:
    profiles = {name: service.get("profiles") for name, service in services.items()}
    assert profiles == {"engines": ["gpu"], "triton": ["gpu"], "triton-cpu": ["cpu"],
                        "client": ["client"]}
    env_file = (REPO_ROOT / ".env").read_text().splitlines()
    assert "COMPOSE_PROFILES=gpu" in env_file


def test_servers_run_the_pinned_triton_of_the_client(services: dict[str, dict]) -> None:
    for name in ("engines", *SERVERS):
        assert services[name]["image"] == TRITON_IMAGE
    assert importlib.metadata.version("tritonclient").startswith("2.51.")


def test_triton_waits_for_the_engines(services: dict[str, dict]) -> None:
    depends = services["triton"]["depends_on"]
    assert set(depends) == {"engines"}
    assert depends["engines"]["condition"] == "service_completed_successfully"
    assert services["engines"].get("restart", "no") == "no"
    command = " ".join(services["engines"]["command"])
    assert f"/models/{ENGINE_SCRIPT}" in command
    assert "depends_on" not in services["triton-cpu"]


def test_gpu_services_reserve_the_same_gpu_and_cpu_ones_none(services: dict[str, dict]) -> None:
    for name in ("engines", "triton"):
        (device,) = gpu_devices(services[name])
        assert device["driver"] == "nvidia"
        assert device["capabilities"] == ["gpu"]
        assert device["device_ids"] == ["0"]
    for name in ("triton-cpu", "client"):
        assert gpu_devices(services[name]) == []


def test_servers_serve_the_repositories_swaptron_export_writes(
        services: dict[str, dict]) -> None:
    tensorrt, onnxruntime = (str(DEFAULT_OUTPUTS[t]) for t in ("tensorrt", "onnxruntime"))
    assert mounts(services["engines"]) == {"/models": (tensorrt, False)}
    assert mounts(services["triton"]) == {"/models": (tensorrt, True)}
    assert mounts(services["triton-cpu"]) == {"/models": (onnxruntime, True)}
    for name in SERVERS:
        command = services[name]["command"]
        assert command[0] == "tritonserver"
        assert flag_values(command, "--model-repository") == ["/models"]
        assert flag_values(command, "--model-control-mode") == ["explicit"]
        assert flag_values(command, "--load-model") == ["*"]


def test_repository_folders_are_overridable(compose: Compose, tmp_path: Path) -> None:
    env = compose_env(SWAPTRON_TENSORRT_REPOSITORY=str(tmp_path / "trt"),
                      SWAPTRON_ONNXRUNTIME_REPOSITORY=str(tmp_path / "ort"), SWAPTRON_GPU="1")
    services = compose.config(env)["services"]
    assert mounts(services["engines"])["/models"][0] == str(tmp_path / "trt")
    assert mounts(services["triton"])["/models"][0] == str(tmp_path / "trt")
    assert mounts(services["triton-cpu"])["/models"][0] == str(tmp_path / "ort")
    assert gpu_devices(services["engines"])[0]["device_ids"] == ["1"]
    assert gpu_devices(services["triton"])[0]["device_ids"] == ["1"]


def test_ports_are_local_unless_opened(compose: Compose, services: dict[str, dict]) -> None:
    for name in SERVERS:
        assert published(services[name]) == {("127.0.0.1", p, p) for p in PORTS}
    opened = compose.config(compose_env(SWAPTRON_BIND="0.0.0.0"))["services"]
    for name in SERVERS:
        assert published(opened[name]) == {("0.0.0.0", p, p) for p in PORTS}
    for name in ("engines", "client"):
        assert published(services[name]) == set()


def test_servers_have_shared_memory_and_a_healthcheck(services: dict[str, dict]) -> None:
    for name in SERVERS:
        service = services[name]
        assert size_in_bytes(service["shm_size"]) >= 1 << 30
        check = service["healthcheck"]
        assert check["test"][:3] == ["CMD", "bash", "-c"]
        assert "/v2/health/ready" in check["test"][3]
        assert "curl" not in check["test"][3]
        assert "start_period" in check


def test_a_missing_admin_key_is_refused(compose: Compose) -> None:
    unset = compose_env()
    del unset["SWAPTRON_ADMIN_KEY"]
    for env in (unset, compose_env(SWAPTRON_ADMIN_KEY="")):
        for flags in ([], ["--profile", "cpu"]):
            result = compose.run(flags, ["config", "--quiet"], env)
            assert result.returncode != 0
            assert "SWAPTRON_ADMIN_KEY" in result.stdout + result.stderr


def test_model_control_needs_the_admin_key(services: dict[str, dict]) -> None:
    for name in SERVERS:
        command = services[name]["command"]
        for flag, locked in (("--grpc-restricted-protocol", access.LOCKED_GRPC),
                             ("--http-restricted-api", access.LOCKED_HTTP)):
            (value,) = flag_values(command, flag)
            apis, header = value.split(":", 1)
            assert apis.split(",") == list(locked), (name, flag)  # as `swaptron serve` locks
            assert header == f"{access.ADMIN_HEADER}={ADMIN_KEY}"


def test_client_reaches_either_server_by_name(services: dict[str, dict]) -> None:
    client = services["client"]["command"]
    assert client[:2] == ["swaptron", "stream"]
    assert flag_values(client, "--url") == ["triton:8001"]
    assert "--no-display" in client
    assert flag_values(client, "--output") and flag_values(client, "--report")
    aliases = services["triton-cpu"]["networks"]["default"]["aliases"]
    assert "triton" in aliases


# --- the server command and healthcheck, run by the real tritonserver 2.51 -----------------


def healthcheck(service: dict, port: int) -> subprocess.CompletedProcess[str]:
    """Run a service's healthcheck command here, aimed at `port` instead of 8000."""
    script = service["healthcheck"]["test"][3].replace("/8000", f"/{port}")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          timeout=10, check=False)


def repository_index_status(url: str, headers: dict[str, str]) -> int:
    """HTTP status of POST /v2/repository/index (a model-repository API)."""
    request = urllib.request.Request(f"http://{url}/v2/repository/index", data=b"{}",
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def compose_server(services: dict[str, dict], tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[TritonServer]:
    """The embedded tritonserver (2.51, as the image) with the compose `triton` flags."""
    flags = [part for part in services["triton"]["command"][1:]
             if not part.startswith("--model-repository=")]
    repository = tmp_path_factory.mktemp("compose_repository")
    log = tmp_path_factory.mktemp("compose_server") / "triton.log"
    with TritonServer(repository, ports=free_ports(), log_path=log, extra_args=tuple(flags),
                      allow_empty_repository=True, lock_apis=False) as server:
        yield server


@pytest.mark.server
def test_healthcheck_passes_on_a_ready_server_and_fails_without_one(
        services: dict[str, dict], compose_server: TritonServer) -> None:
    for name in SERVERS:
        assert healthcheck(services[name], compose_server.ports.http).returncode == 0
    assert healthcheck(services["triton"], free_ports().http).returncode != 0


@pytest.mark.server
def test_the_admin_key_guards_the_control_apis(compose_server: TritonServer) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    assert not any(locked_api_answers(compose_server.http_url, compose_server.grpc_url,
                                      None).values())
    assert all(locked_api_answers(compose_server.http_url, compose_server.grpc_url,
                                  ADMIN_KEY).values())
    assert repository_index_status(compose_server.http_url, access.http_headers("wrong")) != 200
    # the JSON body that aborts Triton 2.51 is refused before it is parsed
    assert http_status(compose_server.http_url, "/v2/models/faceswap/infer",
                       body=ABORTING_JSON) == 403
    client = grpcclient.InferenceServerClient(compose_server.grpc_url)
    try:
        assert client.is_server_ready()
        assert client.get_server_metadata().name == "triton"
        with pytest.raises(InferenceServerException):
            client.get_model_repository_index()
        client.get_model_repository_index(
            headers=access.grpc_metadata(ADMIN_KEY))
    finally:
        client.close()
    assert compose_server.alive()


# --- the repositories the containers serve ---------------------------------------------------


@pytest.fixture(scope="module")
def onnxruntime_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An onnxruntime-target repository, exported once for the module."""
    folder = tmp_path_factory.mktemp("onnxruntime") / "repository"
    export_repository(PipelineOptions(), ServingOptions(target="onnxruntime"), folder,
                      progress=lambda _: None)
    return folder


def configs(repository: Path) -> dict[str, mc.ModelConfig]:
    """Every model config of a repository, parsed as Triton parses it."""
    return {path.parent.name: parse_config(path)
            for path in sorted(repository.glob("*/config.pbtxt"))}


def onnx_inputs(path: Path) -> dict[str, tuple[int, list[int | str]]]:
    """Graph inputs of an ONNX file: name -> (element type, dims; a str for a dynamic dim)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    found = {}
    for tensor in graph.input:
        if tensor.name in initializers:
            continue
        kind = tensor.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in kind.shape.dim]
        found[tensor.name] = (kind.elem_type, dims)
    return found


def trtexec_commands(script: str) -> dict[str, dict[str, str]]:
    """Model name -> `--flag` -> value of each trtexec command in build_engines.sh."""
    commands = {}
    for line in script.splitlines():
        if not line.startswith('"$TRTEXEC" --'):
            continue
        flags = dict(part.split("=", 1) if "=" in part else (part, "")
                     for part in shlex.split(line)[1:])
        commands[flags["--onnx"].split("/")[0]] = flags
    return commands


def profile(argument: str) -> dict[str, list[int]]:
    """`A:1x64x3,B:1x2` -> {"A": [1, 64, 3], "B": [1, 2]}."""
    shapes = {}
    for item in argument.split(","):
        name, dims = item.rsplit(":", 1)
        shapes[name] = [int(d) for d in dims.split("x")]
    return shapes


def check_dimension(index: int, onnx_dim: int | str, low: int, best: int, high: int,
                    max_batch: int) -> None:
    """One dimension of a profile against the graph: static equal, batch 1..max, frame sides."""
    if isinstance(onnx_dim, int):
        assert low == best == high == onnx_dim
    elif index == 0:
        assert (low, high) == (1, max_batch) and low <= best <= high
    else:
        assert low <= FRAME_MIN_SIDE and high >= FRAME_MAX_SIDE and low <= best <= high


def test_trtexec_profiles_match_every_onnx_input(tensorrt_repository: Path) -> None:
    commands = trtexec_commands((tensorrt_repository / ENGINE_SCRIPT).read_text())
    networks = {name: c for name, c in configs(tensorrt_repository).items()
                if c.platform == "tensorrt_plan"}
    assert set(commands) == set(networks) == {"detector", "landmarker", "swapper"}
    for name, config in networks.items():
        flags = commands[name]
        assert flags["--onnx"] == f"{name}/1/model.onnx"
        assert flags["--saveEngine"] == f"{name}/1/{config.default_model_filename}.part"
        assert "--stronglyTyped" in flags and "--fp16" not in flags
        inputs = onnx_inputs(tensorrt_repository / flags["--onnx"])
        levels = [profile(flags[f"--{level}Shapes"]) for level in ("min", "opt", "max")]
        for shapes in levels:
            assert list(shapes) == list(inputs) == [t.name for t in config.input]
        for tensor in config.input:
            elem_type, dims = inputs[tensor.name]
            assert elem_type == ONNX_TYPES[mc.DataType.Name(tensor.data_type)]
            assert [d if isinstance(d, int) else -1 for d in dims[1:]] == list(tensor.dims)
            low, best, high = (shapes[tensor.name] for shapes in levels)
            assert len(low) == len(best) == len(high) == len(dims)
            for index, onnx_dim in enumerate(dims):
                check_dimension(index, onnx_dim, low[index], best[index], high[index],
                                config.max_batch_size)
        for sample in config.model_warmup:
            for key, value in sample.inputs.items():
                low, _, high = (shapes[key] for shapes in levels)
                assert all(a <= d <= b for a, d, b in zip(low[1:], value.dims, high[1:],
                                                           strict=True))


FAKE_TRTEXEC = """#!/usr/bin/env bash
if [ "${1:-}" = "--help" ]; then
  echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100500] # trtexec --help"; exit 0
fi
echo "$*" >> "$TRTEXEC_LOG"
for arg in "$@"; do
  case "$arg" in --saveEngine=*) printf 'engine for %s' "$FAKE_GPU" > "${arg#--saveEngine=}";; esac
done
"""
FAKE_NVIDIA_SMI = """#!/usr/bin/env bash
[ -n "$FAKE_GPU" ] || exit 9
echo "$FAKE_GPU"
"""


@dataclass(frozen=True)
class EngineRun:
    """One run of build_engines.sh: exit status, output, and trtexec builds it made."""

    returncode: int
    output: str
    builds: int


def run_build_script(repository: Path, tools: Path, gpu: str) -> EngineRun:
    """Run build_engines.sh from another folder with the stand-in GPU tools first on PATH."""
    log = tools / "trtexec.log"
    before = len(log.read_text().splitlines()) if log.is_file() else 0
    env = {"PATH": f"{tools}:/usr/bin:/bin", "TRTEXEC": str(tools / "trtexec"),
           "TRTEXEC_LOG": str(log), "FAKE_GPU": gpu}
    result = subprocess.run(["bash", str(repository / ENGINE_SCRIPT)], cwd=tools, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    after = len(log.read_text().splitlines()) if log.is_file() else 0
    return EngineRun(result.returncode, result.stdout + result.stderr, after - before)


def test_engines_are_built_once_per_gpu_tensorrt_and_onnx(tensorrt_repository: Path,
                                                          tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(tensorrt_repository, repository)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("trtexec", FAKE_TRTEXEC), ("nvidia-smi", FAKE_NVIDIA_SMI)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    plans = [repository / m / "1" / "model.plan" for m in ("detector", "landmarker", "swapper")]

    first = run_build_script(repository, tools, "NVIDIA H100 80GB HBM3")
    assert (first.returncode, first.builds) == (0, 3), first.output
    assert all(p.read_text() == "engine for NVIDIA H100 80GB HBM3" for p in plans)
    assert not list(repository.glob("*/1/*.part"))
    manifest = json.loads((repository / MANIFEST).read_text())
    assert manifest["gpu"] == "NVIDIA H100 80GB HBM3"
    assert manifest["tensorrt"] == "TensorRT v100500"

    again = run_build_script(repository, tools, "NVIDIA H100 80GB HBM3")
    assert (again.returncode, again.builds) == (0, 0), again.output
    assert "already built" in again.output

    other_gpu = run_build_script(repository, tools, "NVIDIA L4")
    assert (other_gpu.returncode, other_gpu.builds) == (0, 3), other_gpu.output
    assert json.loads((repository / MANIFEST).read_text())["gpu"] == "NVIDIA L4"

    with (repository / "swapper" / "1" / "model.onnx").open("ab") as onnx_file:
        onnx_file.write(b"\0")
    reexported = run_build_script(repository, tools, "NVIDIA L4")
    assert (reexported.returncode, reexported.builds) == (0, 3), reexported.output

    no_gpu = run_build_script(repository, tools, "")
    assert no_gpu.returncode != 0 and no_gpu.builds == 0
    assert "no GPU visible" in no_gpu.output


def test_onnxruntime_repository_is_complete_for_nvidia_container(
        onnxruntime_repository: Path) -> None:
    found = configs(onnxruntime_repository)
    assert set(found) == {"detector", "landmarker", "swapper", "faceswap"}
    for name, config in found.items():
        assert config.name == name
        folder = onnxruntime_repository / name
        assert (folder / "1").is_dir()
        if config.platform == "ensemble":
            continue
        assert config.backend == "onnxruntime"
        assert all(g.kind != mc.ModelInstanceGroup.KIND_GPU for g in config.instance_group)
        graph = folder / "1" / config.default_model_filename
        assert graph.is_file()
        inputs = onnx_inputs(graph)
        assert list(inputs) == [t.name for t in config.input]
        for tensor in config.input:
            assert inputs[tensor.name][0] == ONNX_TYPES[mc.DataType.Name(tensor.data_type)]
        assert config.model_warmup
        for sample in config.model_warmup:
            for value in sample.inputs.values():
                data = folder / WARMUP_FOLDER / value.input_data_file
                size = int(np.prod(value.dims)) * BYTES_PER_ITEM[mc.DataType.Name(value.data_type)]
                assert data.stat().st_size == size


def test_onnxruntime_ensemble_steps_name_models_that_exist(onnxruntime_repository: Path) -> None:
    found = configs(onnxruntime_repository)
    ensemble = found["faceswap"]
    assert ensemble.platform == "ensemble"
    produced = {t.name for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = found[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}
        assert set(step.input_map.values()) <= produced
        assert set(step.output_map) <= {t.name for t in model.output}
        produced |= set(step.output_map.values())
    assert {t.name for t in ensemble.output} <= produced

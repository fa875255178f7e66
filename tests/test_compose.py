"""docker-compose.yml, validated by the real `docker-compose` (no Docker engine is needed for
`docker-compose config`), and its server flags run by the real tritonserver 2.51.

Which services `up` starts: `config --services` lists them on Compose 2; docker-compose 1 (the
Debian package) lists every service whatever the profiles, so there the Compose specification's
rule is applied to the file it resolved: the services of an enabled profile (from --profile,
else COMPOSE_PROFILES, else the project's .env), plus what they depend on. The repositories these
services serve are tested in test_targets.py.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swaptron.assets import CHECKOUT
from swaptron.export.cli import MAX_BATCH_VARIABLE, MAX_FRAME_VARIABLE, default_output
from swaptron.export.repository import ServingOptions, model_config
from swaptron.export.tensorrt import ENGINE_SCRIPT, ProfileOptions, batch_range, build_script
from swaptron.server import access
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import model_specs

from helpers import ABORTING_JSON, http_status, locked_api_answers

COMPOSE_FILE = CHECKOUT / "docker-compose.yml"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
ADMIN_KEY = "test-admin-key-0123"
SERVERS = ("triton", "triton-cpu")
PROFILES = ("gpu", "cpu", "client")
PORTS = (8000, 8001, 8002)

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
                              cwd=CHECKOUT, env=env, capture_output=True, text=True,
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
        return profile_selection(self.config(env)["services"], enabled_profiles(env, profiles))


def enabled_profiles(env: dict[str, str], flags: list[str]) -> set[str]:
    """Profiles a command enables: its --profile flags, else COMPOSE_PROFILES from the
    environment, else from the project's .env (the Compose specification's order)."""
    if flags:
        return set(flags)
    if "COMPOSE_PROFILES" in env:
        return set(env["COMPOSE_PROFILES"].split(","))
    for line in (CHECKOUT / ".env").read_text().splitlines():
        if line.startswith("COMPOSE_PROFILES="):
            return set(line.split("=", 1)[1].split(","))
    return set()


def profile_selection(services: dict[str, dict], profiles: set[str]) -> set[str]:
    """Services without profiles or with an enabled one, and everything they depend on."""
    chosen = {name for name, service in services.items()
              if not service.get("profiles") or profiles & set(service["profiles"])}
    pending = list(chosen)
    while pending:
        for dependency in services[pending.pop()].get("depends_on", {}):
            if dependency not in chosen:
                chosen.add(dependency)
                pending.append(dependency)
    return chosen


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
    for flags in ([], ["--profile", "cpu"], ["--profile", "client"], ["--profile", "web"]):
        result = compose.run(flags, ["config", "--quiet"], compose_env())
        assert result.returncode == 0, (flags, result.stderr)


def test_documented_commands_start_the_right_services(compose: Compose) -> None:
    assert compose.started(compose_env(), []) == {"engines", "triton"}
    assert compose.started(compose_env(), ["cpu"]) == {"triton-cpu"}
    assert compose.started(compose_env(), ["client"]) == {"client"}
    assert compose.started(compose_env(), ["cpu", "web"]) == {"triton-cpu", "web"}
    assert compose.started(compose_env(COMPOSE_PROFILES="cpu"), []) == {"triton-cpu"}


def test_every_service_is_behind_a_profile(services: dict[str, dict]) -> None:
    profiles = {name: service.get("profiles") for name, service in services.items()}
    assert profiles == {"engines": ["gpu"], "triton": ["gpu"], "triton-cpu": ["cpu"],
                        "client": ["client"], "web": ["web"]}
    env_file = (CHECKOUT / ".env").read_text().splitlines()
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


def test_the_engine_build_gets_the_profile_variables_of_the_shell(
        compose: Compose, services: dict[str, dict]) -> None:
    variables = (MAX_FRAME_VARIABLE, MAX_BATCH_VARIABLE)
    assert {k: services["engines"]["environment"][k] for k in variables} == {
        MAX_FRAME_VARIABLE: "", MAX_BATCH_VARIABLE: ""}  # unset: the export's profile
    shell = compose_env(**{MAX_FRAME_VARIABLE: "1080x1920", MAX_BATCH_VARIABLE: "4"})
    engines = compose.config(shell)["services"]["engines"]
    assert engines["environment"] == {MAX_FRAME_VARIABLE: "1080x1920", MAX_BATCH_VARIABLE: "4"}
    assert "environment" not in services["triton"]
    specs = [spec for spec in model_specs(2).values() if spec.graph]
    serving = ServingOptions(target="tensorrt")
    script = build_script(specs, ProfileOptions(), {
        spec.name: batch_range(model_config(spec, serving, None)) for spec in specs})
    for variable in variables:  # what the script checks (tests/test_tensorrt.py runs it)
        assert f"${{{variable}:-" in script


def test_gpu_services_reserve_the_same_gpu_and_cpu_ones_none(services: dict[str, dict]) -> None:
    for name in ("engines", "triton"):
        (device,) = gpu_devices(services[name])
        assert device["driver"] == "nvidia"
        assert device["capabilities"] == ["gpu"]
        assert device["device_ids"] == ["0"]
    for name in ("triton-cpu", "client", "web"):
        assert gpu_devices(services[name]) == []


def test_servers_serve_the_repositories_swaptron_export_writes(
        services: dict[str, dict]) -> None:
    tensorrt, onnxruntime = (str(default_output(t)) for t in ("tensorrt", "onnxruntime"))
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




def test_the_web_page_is_local_and_needs_the_token_from_the_environment(
        compose: Compose, services: dict[str, dict]) -> None:
    web = services["web"]
    command = web["command"]
    assert command[:2] == ["swaptron", "web"]
    assert flag_values(command, "--url") == ["triton:8001"]
    # every address inside the container, so `swaptron web` refuses to start without a token
    assert flag_values(command, "--host") == ["0.0.0.0"]
    assert published(web) == {("127.0.0.1", 8080, 8080)}
    assert web["build"]["dockerfile"] == services["client"]["build"]["dockerfile"]
    token = "t" * 32
    with_token = compose.config(compose_env(SWAPTRON_WEB_TOKEN=token,
                                            SWAPTRON_WEB_BIND="0.0.0.0"))["services"]["web"]
    assert with_token["environment"]["SWAPTRON_WEB_TOKEN"] == token
    assert published(with_token) == {("0.0.0.0", 8080, 8080)}


def test_the_image_holds_every_package_the_project_installs() -> None:
    dockerfile = (CHECKOUT / "deploy" / "client.Dockerfile").read_text()
    ignore = (CHECKOUT / "deploy" / "client.Dockerfile.dockerignore").read_text().splitlines()
    pyproject = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    for folder in pyproject["tool"]["setuptools"]["package-dir"].values():
        assert f"COPY {folder} {folder}" in dockerfile, folder
        assert f"!{folder}" in ignore, folder

"""Helpers for tests that run real servers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from swaptron.export.build import export_repository
from swaptron.export.repository import ServingOptions
from swaptron.networks.pipeline import PipelineOptions
from swaptron.server import access
from swaptron.specs import FRAME, IDENTITY, MORPH

GRPC_LIMITS = [("grpc.max_send_message_length", 2**31 - 1),
               ("grpc.max_receive_message_length", 2**31 - 1)]
# The hostile JSON of the hardening issue: one value, a shape of 30 GB.
ABORTING_JSON = (b'{"inputs":[{"name":"FRAME","shape":[1,100000,100000,3],'
                 b'"datatype":"UINT8","data":[0]}]}')


def export_target(factory: pytest.TempPathFactory, target: str,
                  pipeline: PipelineOptions | None = None, **options: object) -> Path:
    """An export for a target (the default one unless `pipeline` says), into a temp folder."""
    folder = factory.mktemp(target) / "repository"
    export_repository(pipeline or PipelineOptions(), ServingOptions(target=target), folder,
                      progress=lambda _: None, **options)  # type: ignore[arg-type]
    return folder


def processes_using(repository: Path) -> list[str]:
    """Command lines of live processes that mention the repository (server and backend stubs)."""
    marker = str(repository.resolve())
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in part for part in cmdline):
            found.append(" ".join(cmdline))
    return found


def http_status(url: str, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None, method: str | None = None) -> int:
    """HTTP status of one request to the server (any status), 0 when nothing answered."""
    request = urllib.request.Request(f"http://{url}{path}", data=body, headers=headers or {},
                                     method=method or ("POST" if body is not None else "GET"))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def raw_infer(url: str, model: str, inputs: list[tuple[str, str, tuple[int, ...], bytes]],
              timeout: float = 60.0) -> str:
    """One gRPC ModelInfer built by hand (any declared shape, any bytes): "OK" or the error.

    inputs: (name, datatype, shape, raw bytes) per tensor.
    """
    with grpc.insecure_channel(url, options=GRPC_LIMITS) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name=model)
        for name, datatype, shape, data in inputs:
            tensor = request.inputs.add()
            tensor.name, tensor.datatype = name, datatype
            tensor.shape.extend(shape)
            request.raw_input_contents.append(data)
        try:
            stub.ModelInfer(request, timeout=timeout)
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"
    return "OK"


def infer_frame(url: str, model: str, frame: np.ndarray, outputs: tuple[str, ...]
                ) -> dict[str, np.ndarray]:
    """One well-formed gRPC request of a frame batch [B,H,W,3]; the outputs asked for."""
    with grpcclient.InferenceServerClient(url) as client:
        tensor = grpcclient.InferInput("FRAME", list(frame.shape), "UINT8")
        tensor.set_data_from_numpy(frame)
        result = client.infer(model, [tensor],
                              outputs=[grpcclient.InferRequestedOutput(n) for n in outputs])
        return {name: result.as_numpy(name) for name in outputs}


def swap_inputs(frame: np.ndarray, identity: str | None = None, morph: float | None = None
                ) -> list[grpcclient.InferInput]:
    """A swap request's inputs: one frame [H,W,3], and the IDENTITY and MORPH when given."""
    tensor = grpcclient.InferInput(FRAME, [1, *frame.shape], "UINT8")
    tensor.set_data_from_numpy(frame[None])
    inputs = [tensor]
    if identity is not None:
        choice = grpcclient.InferInput(IDENTITY, [1, 1], "BYTES")
        choice.set_data_from_numpy(np.array([[identity.encode()]], dtype=object))
        inputs.append(choice)
    if morph is not None:
        value = grpcclient.InferInput(MORPH, [1, 1], "FP32")
        value.set_data_from_numpy(np.array([[morph]], np.float32))
        inputs.append(value)
    return inputs


def wait_until_serving(url: str, model: str, frame: np.ndarray, output: str,
                       timeout_s: float = 60.0) -> tuple[np.ndarray, float]:
    """Retry a good request until it succeeds; its output and the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            return infer_frame(url, model, frame, (output,))[output], time.monotonic() - started
        except (InferenceServerException, ConnectionError):
            if time.monotonic() - started > timeout_s:
                raise
            time.sleep(0.2)


def server_memory_mb(pid: int) -> float:
    """Proportional set size of a server and its child processes, in MB (shared pages once)."""
    server = psutil.Process(pid)
    total = 0
    for process in (server, *server.children(recursive=True)):
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return total / 2**20


def locked_api_answers(http_url: str, grpc_url: str, key: str | None) -> dict[str, bool]:
    """Each locked API -> True when the server let the request through (with `key`, or none)."""
    headers = access.http_headers(key)
    register = json.dumps({"key": "/nothing", "offset": 0, "byte_size": 64}).encode()
    infer = json.dumps({"inputs": [{"name": "X", "shape": [1, 1], "datatype": "FP32",
                                    "data": [1.0]}]}).encode()
    http = {
        "http model-repository": http_status(http_url, "/v2/repository/index", body=b"{}",
                                             headers=headers),
        "http shared-memory status": http_status(http_url, "/v2/systemsharedmemory/status",
                                                 headers=headers),
        "http shared-memory register": http_status(
            http_url, "/v2/systemsharedmemory/region/probe/register", body=register,
            headers=headers),
        "http logging": http_status(http_url, "/v2/logging", headers=headers),
        "http trace": http_status(http_url, "/v2/trace/setting", headers=headers),
        "http inference": http_status(http_url, "/v2/models/double/infer", body=infer,
                                      headers=headers),
    }
    answers = {name: status != 403 for name, status in http.items()}
    metadata = access.grpc_metadata(key)
    with grpcclient.InferenceServerClient(grpc_url) as client:
        calls = {
            "grpc model-repository": lambda: client.get_model_repository_index(headers=metadata),
            "grpc shared-memory status": lambda: client.get_system_shared_memory_status(
                headers=metadata),
            "grpc shared-memory register": lambda: client.register_system_shared_memory(
                "probe", "/nothing", 64, headers=metadata),
            "grpc logging": lambda: client.get_log_settings(headers=metadata),
            "grpc trace": lambda: client.get_trace_settings(headers=metadata),
        }
        for name, call in calls.items():
            try:
                call()
                answers[name] = True
            except InferenceServerException as error:
                answers[name] = "restricted" not in str(error)
    return answers

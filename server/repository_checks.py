"""Check a model repository before the server loads it: that it holds models, that their exported
files are there, and which of them run in Python-backend stubs."""

from __future__ import annotations

import contextlib
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tritonclient.grpc import model_config_pb2 as mc

from swaptron.server.errors import ServerError


def repository_models(repository: Path) -> list[str]:
    """Names of the models in a repository; raises ServerError when it is missing or empty."""
    if not repository.is_dir():
        raise ServerError(
            f"model repository {repository} does not exist: run `swaptron export` "
            "or pass --model-repository"
        )
    models = sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())
    if not models:
        raise ServerError(
            f"model repository {repository} holds no model (no */config.pbtxt): "
            "run `swaptron export` or pass another --model-repository"
        )
    return models


def version_folders(model: Path) -> list[Path]:
    """Numbered version folders of a model that hold at least one file."""
    return [p for p in model.iterdir() if p.is_dir() and p.name.isdigit() and any(p.iterdir())]


def python_models(repository: Path) -> set[str]:
    """Names of a repository's Python-backend models: each runs in a stub process of its own."""
    names = set()
    for path in repository.glob("*/config.pbtxt"):
        with contextlib.suppress(text_format.ParseError, DecodeError, OSError):
            if text_format.Parse(path.read_text(), mc.ModelConfig()).backend == "python":
                names.add(path.parent.name)
    return names


def unexported_models(repository: Path) -> list[str]:
    """Models whose configs are there but whose files are not (a fresh clone before export).

    A Python-backend model needs its `model.py` (and the file an `onnx_file` parameter names); a
    model of another backend needs a non-empty version folder; ensembles need nothing.
    """
    missing = []
    for path in sorted(repository.glob("*/config.pbtxt")):
        try:
            config = text_format.Parse(path.read_text(), mc.ModelConfig())
        except (text_format.ParseError, DecodeError) as error:
            raise ServerError(f"{path} is not a valid model config: {error}") from error
        if config.platform == "ensemble":
            continue
        versions = version_folders(path.parent)
        needed = ["model.py"] if config.backend == "python" else []
        if "onnx_file" in config.parameters:
            needed.append(config.parameters["onnx_file"].string_value)
        if not versions or not all((versions[0] / name).is_file() for name in needed):
            missing.append(path.parent.name)
    return missing


def check_repository(repository: Path) -> None:
    """Raise ServerError naming the fix when the repository is missing, empty, or not exported."""
    repository_models(repository)
    missing = unexported_models(repository)
    if missing:
        raise ServerError(
            f"model repository {repository} has configs but no exported graphs "
            f"for {', '.join(missing)}: run `swaptron export` (add --output "
            f"{repository} for another folder) before serving it")

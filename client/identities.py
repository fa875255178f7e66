"""`swaptron identities`: the identities a server swaps into, read from its selector's config."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from swaptron.arguments import URL_HELP, grpc_url
from swaptron.specs import SELECTOR

EXIT_ERROR = 1


@dataclass(frozen=True)
class ServedIdentities:
    """What a server offers: identities in decoder order, the default, the face choices."""

    identities: list[str]
    default: str
    face_choices: list[str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron identities`."""
    parser.add_argument("--url", type=grpc_url, default="127.0.0.1:8001", help=URL_HELP)
    parser.add_argument("--json", action="store_true", help="print JSON")


def served_identities(url: str) -> ServedIdentities:
    """Read the selector's config (InferenceServerException when the server cannot say)."""
    from swaptron.client.infer import sync_client

    with sync_client(url) as client:
        config = client.get_model_config(SELECTOR, as_json=True)["config"]
    parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
    return ServedIdentities(parameters["identities"].split(","), parameters["default_identity"],
                            parameters["face_choices"].split(","))


def run(args: argparse.Namespace) -> int:
    """Print the identities, the default marked."""
    from tritonclient.utils import InferenceServerException

    try:
        served = served_identities(args.url)
    except InferenceServerException as error:
        print(f"error: cannot read the identities from {args.url}: {error}")
        return EXIT_ERROR
    if args.json:
        print(json.dumps(asdict(served)))
        return 0
    for name in served.identities:
        print(f"{name}{'  (default)' if name == served.default else ''}")
    print(f"faces: {' | '.join(served.face_choices)} (default {served.face_choices[0]})")
    return 0

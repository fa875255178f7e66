"""argparse types for numbers and server addresses, shared by every subcommand: a bad value is an
argparse error that names the option and what it takes."""

from __future__ import annotations

import argparse
import ipaddress
import math


def number(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from error
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number of at least 0 (a seed)."""
    return whole_number(text, 0)


def whole_number(text: str, least: int) -> int:
    """A whole number of at least `least`."""
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from error
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = number(text) if text.strip().lower() != "nan" else math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number from 0 to 1."""
    value = number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


URL_HELP = ("Triton gRPC address: HOST:PORT, several IP:PORT joined by commas, or dns:///NAME:PORT "
            "(streams are spread over the servers; each stays on one)")


def grpc_target(url: str) -> str:
    """The gRPC target of a --url: HOST:PORT; several IP:PORT joined by commas (the ipv4: or
    ipv6: resolver, balanced over them); or a resolver target such as dns:///triton:8001
    (balanced over every address the name resolves to, as a headless Kubernetes Service gives).
    ValueError naming what to write instead."""
    addresses = [part.strip() for part in url.split(",") if part.strip()]
    if not addresses:
        raise ValueError("the address is empty")
    if len(addresses) == 1 or "://" in url:
        return url
    hosts = [address.rpartition(":")[0].strip("[]") for address in addresses]
    try:
        families = {ipaddress.ip_address(host).version for host in hosts}
    except ValueError as error:
        raise ValueError(f"several addresses ({url}) must be IP:PORT each; for a name that "
                         "resolves to several servers use dns:///NAME:PORT") from error
    if len(families) != 1:
        raise ValueError(f"{url} mixes IPv4 and IPv6 addresses; use one family")
    return f"ipv{families.pop()}:{','.join(addresses)}"


def grpc_url(text: str) -> str:
    """A --url that is a gRPC target (kept as written; see grpc_target)."""
    try:
        grpc_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return text

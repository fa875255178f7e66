"""--url: one server, several (balanced by gRPC's round_robin), or a resolver name."""

from __future__ import annotations

import argparse

import pytest

from swaptron.arguments import grpc_target, grpc_url
from swaptron.client.infer import CHANNEL_OPTIONS


@pytest.mark.parametrize(("url", "target"), [
    ("127.0.0.1:8001", "127.0.0.1:8001"),
    ("triton:8001", "triton:8001"),
    ("127.0.0.1:8001,127.0.0.1:9001", "ipv4:127.0.0.1:8001,127.0.0.1:9001"),
    (" 10.0.0.1:8001 , 10.0.0.2:8001 ", "ipv4:10.0.0.1:8001,10.0.0.2:8001"),
    ("[::1]:8001,[::1]:9001", "ipv6:[::1]:8001,[::1]:9001"),
    ("dns:///triton.swaptron.svc:8001", "dns:///triton.swaptron.svc:8001"),
])
def test_a_url_becomes_its_grpc_target(url: str, target: str) -> None:
    assert grpc_target(url) == target


@pytest.mark.parametrize(("url", "words"), [
    ("a:1,b:2", "dns:///NAME:PORT"),
    ("127.0.0.1:1,[::1]:2", "mixes IPv4 and IPv6"),
    (" , ", "empty"),
])
def test_a_bad_url_is_refused_by_name(url: str, words: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=words):
        grpc_url(url)


def test_channels_balance_calls_round_robin() -> None:
    assert ("grpc.lb_policy_name", "round_robin") in CHANNEL_OPTIONS

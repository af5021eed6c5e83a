"""Loopback ports for local tritonservers: three per server, never the same one twice."""

from __future__ import annotations

import socket

from modelops_builder.triton_local import PORT_TAKEN_MARKERS, free_ports


def test_ports_chosen_together_are_distinct_and_bindable() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[0]))


def test_the_message_of_a_taken_port_is_recognised() -> None:
    # What tritonserver 2.51 printed when gRPC and metrics were given the same port.
    log = (
        "The server cannot listen to GRPC requests and metrics requests at the same address "
        "and port 127.0.0.1:42839"
    )
    assert any(marker in log.lower() for marker in PORT_TAKEN_MARKERS)

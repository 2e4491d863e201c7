"""A ServerConnection behind a load balancer reads the PROXY header first
(HAProxy proxy-protocol.txt, sections 2.1 and 2.2)."""

from __future__ import annotations

import pytest
from helpers import drain

from smtp_core import (
    NEED_DATA,
    PAUSED,
    Ehlo,
    LocalProtocolError,
    ProxyCommand,
    ProxyError,
    ProxyFamily,
    ProxyHeader,
    ProxyTransport,
    ServerConfig,
    ServerConnection,
    write_proxy_v2,
)

BEHIND_PROXY = ServerConfig(proxy_protocol=True)


@pytest.mark.parametrize("piece", [1, 5, 1000])
def test_v1_header_then_smtp(piece: int):
    """proxy-protocol.txt 2.1: the header comes before any SMTP byte."""
    server = ServerConnection(BEHIND_PROXY)
    data = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO c\r\n"
    events = []
    for start in range(0, len(data), piece):
        server.receive_data(data[start : start + piece])
        events += drain(server)
    [header] = events
    assert isinstance(header, ProxyHeader)
    assert header.source == ("192.0.2.1", 56324) and header.destination == ("198.51.100.2", 25)
    assert server.proxy_header == header
    assert server.next_event() is PAUSED  # now the greeting is owed
    server.send(server.greeting())
    assert drain(server) == [Ehlo("c")]


def test_v2_header_with_the_smtp_bytes_in_the_same_read():
    """proxy-protocol.txt 2.2: binary header, then the stream."""
    header = ProxyHeader(
        2,
        ProxyCommand.PROXY,
        ProxyFamily.INET6,
        ProxyTransport.STREAM,
        ("2001:db8::1", 4242),
        ("2001:db8::2", 25),
    )
    server = ServerConnection(BEHIND_PROXY)
    server.receive_data(write_proxy_v2(header) + b"EHLO c\r\n")
    assert server.next_event() == header
    server.send(server.greeting())
    assert server.next_event() == Ehlo("c")


def test_no_greeting_before_the_header_and_garbage_is_an_error():
    server = ServerConnection(BEHIND_PROXY)
    assert server.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError, match="PROXY header"):
        server.send(server.greeting())
    server.receive_data(b"EHLO sneaky\r\n")
    with pytest.raises(ProxyError, match="offset 0"):
        server.next_event()

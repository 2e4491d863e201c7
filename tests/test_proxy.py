"""The PROXY protocol parser and writers (HAProxy's proxy-protocol.txt,
versions 1 and 2), read before the SMTP greeting."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
from collections.abc import Iterable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtp_core import NEED_DATA, LocalProtocolError, RemoteProtocolError
from smtp_core._proxy import (
    ProxyCommand,
    ProxyError,
    ProxyFamily,
    ProxyHeader,
    ProxyParser,
    ProxySsl,
    ProxySslSubtype,
    ProxyTlvType,
    ProxyTransport,
    crc32c,
    write_v1,
    write_v2,
)

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
LOCAL, PROXY = ProxyCommand.LOCAL, ProxyCommand.PROXY
UNSPEC, INET, INET6, UNIX = (
    ProxyFamily.UNSPEC,
    ProxyFamily.INET,
    ProxyFamily.INET6,
    ProxyFamily.UNIX,
)
NO_TRANSPORT, STREAM, DGRAM = ProxyTransport.UNSPEC, ProxyTransport.STREAM, ProxyTransport.DGRAM
FAMILY_TRANSPORTS = [
    (UNSPEC, NO_TRANSPORT),
    (INET, STREAM),
    (INET, DGRAM),
    (INET6, STREAM),
    (INET6, DGRAM),
    (UNIX, STREAM),
    (UNIX, DGRAM),
]
UNKNOWN_V1 = ProxyHeader(1, LOCAL, UNSPEC, NO_TRANSPORT)
SMTP = b"EHLO client.example\r\nMAIL FROM:<a@example.com>\r\n"


def outcome(
    data: bytes,
    cuts: Iterable[int] = (),
    *,
    eof: bool = True,
    versions: frozenset[int] = frozenset({1, 2}),
    max_tlv_size: int = 4096,
) -> tuple[object, ...]:
    """Feeds ``data`` cut at ``cuts``, calling next() after every piece, then
    b"" if ``eof``; says what the parser made of it, errors included."""
    parser = ProxyParser(versions=versions, max_tlv_size=max_tlv_size)
    bounds = sorted({0, len(data), *(cut for cut in cuts if 0 <= cut <= len(data))})
    pieces = [data[start:end] for start, end in itertools.pairwise(bounds)]
    if eof:
        pieces.append(b"")
    result: object = NEED_DATA
    try:
        for piece in pieces:
            parser.receive_data(piece)
            result = parser.next()
    except ProxyError as error:
        return ("error", str(error), error.offset)
    if result is NEED_DATA:
        return ("need data",)
    assert isinstance(result, ProxyHeader)
    return ("header", result, parser.leftover)


def parse(
    data: bytes, *, versions: frozenset[int] = frozenset({1, 2}), max_tlv_size: int = 4096
) -> tuple[ProxyHeader, bytes]:
    result = outcome(data, versions=versions, max_tlv_size=max_tlv_size)
    assert result[0] == "header", result
    header, leftover = result[1], result[2]
    assert isinstance(header, ProxyHeader) and isinstance(leftover, bytes)
    return header, leftover


def refusal(
    data: bytes,
    cuts: Iterable[int] = (),
    *,
    eof: bool = True,
    versions: frozenset[int] = frozenset({1, 2}),
    max_tlv_size: int = 4096,
) -> tuple[str, int]:
    result = outcome(data, cuts, eof=eof, versions=versions, max_tlv_size=max_tlv_size)
    assert result[0] == "error", result
    message, offset = result[1], result[2]
    assert isinstance(message, str) and isinstance(offset, int)
    return message, offset


def v2(ver_cmd: int, fam: int, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return SIGNATURE + bytes((ver_cmd, fam)) + size.to_bytes(2, "big") + payload


def tlv(tlv_type: int, value: bytes) -> bytes:
    return bytes((tlv_type,)) + len(value).to_bytes(2, "big") + value


IPV4_BLOCK = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + (56324).to_bytes(2, "big") + b"\x00\x19"


# --- version 1 ----------------------------------------------------------------


def test_v1_spec_example_before_an_http_request() -> None:
    """proxy-protocol.txt 2.1: the example line, with what follows left intact."""
    rest = b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    header, leftover = parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + rest)
    assert header == ProxyHeader(
        1, PROXY, INET, STREAM, ("192.168.0.1", 56324), ("192.168.0.11", 443)
    )
    assert leftover == rest


FFFF6 = ":".join(["ffff"] * 8)


@pytest.mark.parametrize(
    ("line", "size", "expected"),
    [
        (
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
            56,
            ProxyHeader(
                1, PROXY, INET, STREAM, ("255.255.255.255", 65535), ("255.255.255.255", 65535)
            ),
        ),
        (
            f"PROXY TCP6 {FFFF6} {FFFF6} 65535 65535\r\n".encode(),
            104,
            ProxyHeader(1, PROXY, INET6, STREAM, (FFFF6, 65535), (FFFF6, 65535)),
        ),
        (b"PROXY UNKNOWN\r\n", 15, UNKNOWN_V1),
        (f"PROXY UNKNOWN {FFFF6} {FFFF6} 65535 65535\r\n".encode(), 107, UNKNOWN_V1),
    ],
)
def test_v1_longest_lines_of_each_kind(line: bytes, size: int, expected: ProxyHeader) -> None:
    """proxy-protocol.txt 2.1: the maximum line lengths a receiver must support."""
    assert len(line) == size
    assert parse(line + SMTP) == (expected, SMTP)


def test_v1_ipv6_addresses_come_out_canonical() -> None:
    """proxy-protocol.txt 2.1: upper or lower case hex, one "::" allowed."""
    header, _ = parse(b"PROXY TCP6 2001:DB8:0:0::1 ::FFFF:192.0.2.1 25 587\r\n")
    assert header.source == ("2001:db8::1", 25)
    assert header.destination == ("::ffff:c000:201", 587)


def test_v1_unknown_ignores_anything_up_to_crlf() -> None:
    """proxy-protocol.txt 2.1: for UNKNOWN "the receiver must ignore anything
    presented before the CRLF"; the real connection's addresses hold."""
    header, leftover = parse(b"PROXY UNKNOWN not \x00 even \xff text\r\nQUIT\r\n")
    assert header == UNKNOWN_V1
    assert header.command is LOCAL and header.source is None and header.destination is None
    assert leftover == b"QUIT\r\n"


def test_v1_line_of_exactly_107_octets_is_accepted() -> None:
    """proxy-protocol.txt 2.1: 107 octets, CRLF included, is the limit."""
    line = b"PROXY UNKNOWN " + b"x" * (107 - 16) + b"\r\n"
    assert len(line) == 107
    assert parse(line + b"NOOP\r\n") == (UNKNOWN_V1, b"NOOP\r\n")


def test_v1_line_of_108_octets_is_refused_as_soon_as_107_have_come() -> None:
    """proxy-protocol.txt 2.1: "If the CRLF sequence is not found in the first
    107 characters, the receiver should declare the line invalid" (and not
    wait for more)."""
    line = b"PROXY UNKNOWN " + b"x" * (108 - 16) + b"\r\n"
    assert len(line) == 108
    message, offset = refusal(line[:107], eof=False)
    assert offset == 106
    assert "CRLF ending the line within 107 octets" in message
    assert refusal(line) == (message, offset)
    assert outcome(line[:106], eof=False) == ("need data",)


@pytest.mark.parametrize(
    ("line", "offset", "expected"),
    [
        (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, "expected 'PROXY '"),
        (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, "expected 'PROXY '"),
        (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 6, "expected 'TCP4', 'TCP6' or 'UNKNOWN'"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 6, "got b'TCP5'"),
        (b"PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", 6, "got b'TCP'"),
        (b"PROXY UNKNOWNX\r\n", 6, "got b'UNKNOWNX'"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 11, "expected a source address"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 19, "expected a destination address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", 27, "expected a source port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", 29, "expected a destination port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 30, "expected CRLF after the destination port"),
        (b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", 11, "expected an IPv4 address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 28, "expected ' ' and a destination port"),
        (b"PROXY TCP4\r\n", 10, "expected ' ' and a source address"),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 11, "IPv4 address without leading zeros"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n", 19, "IPv4 address without leading zeros"),
        (b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", 11, "got b'256.2.3.4'"),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 11, "got b'1.2.3'"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", 11, "expected an IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 11, "expected an IPv6 address"),
        (b"PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n", 15, "expected an IPv6 address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 11, "got b'fe80::1%'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 025 2\r\n", 27, "port without leading zeros"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", 27, "port without leading zeros"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", 29, "port in 0..65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", 29, "port in 0..65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 27, "decimal port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 30, "bare LF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 31, "expected LF after CR"),
        (b"PROXY UNKNOWN a\nb\r\n", 15, "bare LF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", 31, "expected LF after CR"),
    ],
)
def test_v1_malformed_lines_are_refused(line: bytes, offset: int, expected: str) -> None:
    """proxy-protocol.txt 2.1: "exactly one space", canonical addresses,
    "Heading zeroes are not permitted", CRLF and not a lone CR or LF; "Any
    sequence which does not exactly match the protocol must be discarded"."""
    message, found = refusal(line + SMTP)
    assert found == offset, message
    assert expected in message
    assert f"at offset {offset}" in message
    assert refusal(line + SMTP, range(len(line))) == (message, found)


def test_v1_prefix_is_refused_before_the_line_ends() -> None:
    """proxy-protocol.txt 2.1: "abort the connection as soon as possible"."""
    message, offset = refusal(b"PROXX", eof=False)
    assert (offset, message) == (0, "PROXY header: expected 'PROXY ' at offset 0, got b'PROXX'")
    assert refusal(b"PROXY TCP4 1.2.3.4 1.2.3.4 08", eof=False)[1] == 27


def test_v1_truncated_line_is_refused_at_end_of_stream() -> None:
    """proxy-protocol.txt 2.1: "The receiver must wait for the CRLF sequence";
    if the peer closes first there is no header."""
    data = b"PROXY TCP4 192.0.2.1 198.51.100.2 1025"
    assert outcome(data, eof=False) == ("need data",)
    message, offset = refusal(data)
    assert offset == len(data)
    assert "end of the stream" in message


# --- what comes first -----------------------------------------------------------


@pytest.mark.parametrize("data", [b"EHLO client.example\r\n", b"E", b"\x16\x03\x01\x02\x00", b" "])
def test_bytes_that_start_neither_signature_are_refused_at_once(data: bytes) -> None:
    """proxy-protocol.txt 2.2: "otherwise the protocol is not covered by this
    specification and the connection must be dropped"; section 5: never
    guess whether a header is there."""
    message, offset = refusal(data, eof=False)
    assert offset == 0
    assert message == (
        "PROXY header: expected 'PROXY ' (version 1) or the version 2 signature "
        f"at offset 0, got {data[:1]!r}"
    )


def test_empty_stream_is_refused() -> None:
    """proxy-protocol.txt 2: the receiver MUST NOT go on without a header."""
    assert refusal(b"") == (
        "PROXY header: expected a PROXY header at offset 0, got the end of the stream",
        0,
    )


def test_versions_option_limits_what_is_accepted() -> None:
    """proxy-protocol.txt 2: receivers implement version 1, version 2, or both."""
    v1_line = b"PROXY UNKNOWN\r\n"
    v2_local = v2(0x20, 0x00, b"")
    assert refusal(v1_line, versions=frozenset({2}))[0] == (
        "PROXY header: expected the version 2 signature (only version 2 is accepted) "
        "at offset 0, got b'P'"
    )
    assert refusal(v2_local, versions=frozenset({1}))[1] == 0
    assert parse(v1_line, versions=frozenset({1}))[0] == UNKNOWN_V1
    assert parse(v2_local, versions=frozenset({2}))[0] == ProxyHeader(
        2, LOCAL, UNSPEC, NO_TRANSPORT
    )


# --- version 2 ------------------------------------------------------------------


def test_v2_tcp_over_ipv4() -> None:
    """proxy-protocol.txt 2.2: \\x21 (v2 PROXY), \\x11 (TCP over IPv4), 12 octets."""
    data = v2(0x21, 0x11, IPV4_BLOCK)
    assert len(data) == 28
    header, leftover = parse(data + SMTP)
    assert header == ProxyHeader(2, PROXY, INET, STREAM, ("192.0.2.1", 56324), ("198.51.100.2", 25))
    assert leftover == SMTP


def test_v2_udp_over_ipv6() -> None:
    """proxy-protocol.txt 2.2: \\x22 (UDP over IPv6), 36 octets."""
    source = bytes.fromhex("20010db8000000000000000000000001")
    destination = bytes.fromhex("fe800000000000000000000000000002")
    data = v2(0x21, 0x22, source + destination + b"\x04\x01\x00\x35")
    header, _ = parse(data)
    assert header == ProxyHeader(2, PROXY, INET6, DGRAM, ("2001:db8::1", 1025), ("fe80::2", 53))


def test_v2_unix_stream_paths() -> None:
    """proxy-protocol.txt 2.2: \\x31 (UNIX stream), two 108-octet paths; a
    path filling all 108 octets has no NUL."""
    long_path = b"/" + b"p" * 107
    data = v2(0x21, 0x31, b"/run/client.sock".ljust(108, b"\x00") + long_path)
    header, _ = parse(data + SMTP)
    assert header.family is UNIX and header.transport is STREAM
    assert header.source == "/run/client.sock"
    assert header.destination == long_path.decode()


def test_v2_unix_path_with_non_utf8_octets_round_trips() -> None:
    """proxy-protocol.txt 2.2: paths are octets; they survive decoding and writing."""
    data = v2(0x21, 0x32, b"/tmp/\xff\xfe".ljust(108, b"\x00") + bytes(108))
    header, _ = parse(data)
    assert header.source == "/tmp/\udcff\udcfe" and header.destination == ""
    assert write_v2(header) == data


def test_v2_local_ignores_the_address_block() -> None:
    """proxy-protocol.txt 2.2: LOCAL: "discard the protocol block including the
    family", and "must not assume zero is presented for LOCAL"."""
    header, leftover = parse(v2(0x20, 0x11, b"\xee" * 12) + SMTP)
    assert header == ProxyHeader(2, LOCAL, INET, STREAM)
    assert leftover == SMTP
    assert parse(v2(0x20, 0x21, b"\xee" * 7))[0] == ProxyHeader(2, LOCAL, INET6, STREAM)
    assert parse(v2(0x20, 0x00, b""))[0] == ProxyHeader(2, LOCAL, UNSPEC, NO_TRANSPORT)


def test_v2_local_keeps_tlvs_after_its_address_block() -> None:
    """proxy-protocol.txt 2.2: TLVs follow the address block."""
    header, _ = parse(v2(0x20, 0x11, bytes(12) + tlv(0x05, b"id-1")))
    assert header.source is None and header.unique_id == b"id-1"
    header, _ = parse(v2(0x20, 0x00, tlv(0x05, b"id-2")))
    assert header.tlvs == ((5, b"id-2"),)


def test_v2_proxy_over_unspec_has_no_addresses() -> None:
    """proxy-protocol.txt 2.2: AF_UNSPEC: "The receiver should ignore address
    information" and use the real endpoints."""
    header, _ = parse(v2(0x21, 0x00, tlv(0x04, b"")))
    assert header == ProxyHeader(2, PROXY, UNSPEC, NO_TRANSPORT, tlvs=((4, b""),))


@pytest.mark.parametrize(
    ("data", "offset", "expected"),
    [
        (b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + IPV4_BLOCK, 0, "version 2 signature"),
        (b"\r\n\r\n\x01", 0, "version 2 signature"),
        (v2(0x11, 0x11, IPV4_BLOCK), 12, "version 2 in the high nibble at offset 12, got 0x11"),
        (v2(0x31, 0x11, IPV4_BLOCK), 12, "version 2 in the high nibble"),
        (v2(0x22, 0x11, IPV4_BLOCK), 12, "command LOCAL (0) or PROXY (1)"),
        (v2(0x2F, 0x11, IPV4_BLOCK), 12, "command LOCAL (0) or PROXY (1)"),
        (v2(0x21, 0x41, IPV4_BLOCK), 13, "address family 0..3"),
        (v2(0x21, 0xF1, IPV4_BLOCK), 13, "address family 0..3"),
        (v2(0x21, 0x13, IPV4_BLOCK), 13, "transport 0..2"),
        (v2(0x21, 0x10, IPV4_BLOCK), 13, "got 0x10"),
        (v2(0x21, 0x01, b""), 13, "got 0x01"),
        (v2(0x20, 0x30, b""), 13, "got 0x30"),
        (
            v2(0x21, 0x11, IPV4_BLOCK[:11]),
            14,
            "at least 12 for INET addresses at offset 14, got 11",
        ),
        (v2(0x21, 0x21, bytes(35)), 14, "at least 36 for INET6 addresses at offset 14, got 35"),
        (v2(0x21, 0x31, bytes(215)), 14, "at least 216 for UNIX addresses at offset 14, got 215"),
        (v2(0x21, 0x11, IPV4_BLOCK + b"\x04\x00"), 28, "3-octet TLV header"),
        (v2(0x21, 0x11, IPV4_BLOCK + b"\x04\x00\x05abcd"), 28, "TLV that fits in its block"),
        (v2(0x21, 0x11, IPV4_BLOCK + tlv(4, b"") + b"\x01\xff\xff"), 31, "claiming 65535"),
        (v2(0x21, 0x11, IPV4_BLOCK + tlv(3, b"abc")), 31, "4-octet CRC32C value"),
        (v2(0x21, 0x11, IPV4_BLOCK + tlv(5, bytes(129))), 31, "UNIQUE_ID of at most 128"),
        (v2(0x21, 0x11, IPV4_BLOCK + tlv(2, b"mx.\xffexample")), 34, "UTF-8 AUTHORITY"),
        (v2(0x21, 0x11, IPV4_BLOCK + tlv(0x30, b"ns\x80")), 33, "US-ASCII NETNS"),
        (v2(0x21, 0x11, IPV4_BLOCK + tlv(0x20, b"\x01\x00\x00\x00")), 31, "SSL TLV of at least 5"),
        (
            v2(0x21, 0x11, IPV4_BLOCK + tlv(0x20, bytes(5) + b"\x21\x00\x09TLSv1.3")),
            36,
            "SSL sub-TLV that fits",
        ),
        (
            v2(0x21, 0x11, IPV4_BLOCK + tlv(0x20, bytes(5) + tlv(0x21, b"TLS\xc3\xa9"))),
            42,
            "US-ASCII SSL version",
        ),
    ],
)
def test_v2_malformed_headers_are_refused(data: bytes, offset: int, expected: str) -> None:
    """proxy-protocol.txt 2.2: the signature, "the receiver must only accept"
    version 2, unassigned commands, families and transports "must be rejected",
    address lengths 12/36/216, and TLVs that fit the announced length (2.2.3
    to 2.2.7 for the typed values)."""
    message, found = refusal(data + SMTP)
    assert found == offset, message
    assert expected in message
    assert refusal(data + SMTP, range(len(data))) == (message, found)


def test_v2_bad_fixed_header_is_refused_without_waiting_for_the_block() -> None:
    """proxy-protocol.txt 2.1 (abort "as soon as possible"), 2.2."""
    assert refusal(SIGNATURE + b"\x21\x14", eof=False)[1] == 13
    assert refusal(SIGNATURE[:7] + b"X", eof=False)[1] == 0


def test_v2_length_beyond_the_limits_is_refused_before_the_block_arrives() -> None:
    """proxy-protocol.txt 2.2: the length may say up to 65535, but the parser
    buffers no more than 16 + address block + max_tlv_size octets."""
    fixed = SIGNATURE + b"\x21\x11\xff\xff"
    message, offset = refusal(fixed, eof=False)
    assert offset == 14
    assert (
        "at most 4108 (INET addresses and 4096 octets of TLVs) at offset 14, got 65535" in message
    )
    fits = v2(0x21, 0x11, IPV4_BLOCK + tlv(4, bytes(7)))
    assert parse(fits, max_tlv_size=10)[0].tlvs == ((4, bytes(7)),)
    too_big = v2(0x21, 0x11, IPV4_BLOCK + tlv(4, bytes(8)))
    assert refusal(too_big[:16], eof=False, max_tlv_size=10)[1] == 14
    local = v2(0x20, 0x00, tlv(4, bytes(8)))
    assert refusal(local[:16], eof=False, max_tlv_size=10)[1] == 14


def test_v2_truncated_header_is_refused_at_end_of_stream() -> None:
    """proxy-protocol.txt 2.2: "The receiver must also reject incoming
    connections containing partial protocol headers"."""
    data = v2(0x21, 0x11, IPV4_BLOCK)
    for size in (1, 12, 15, 16, 27):
        assert outcome(data[:size], eof=False) == ("need data",)
        message, offset = refusal(data[:size])
        assert offset == size and "end of the stream" in message
    assert "version 2 header of 28 octets" in refusal(data[:20])[0]


# --- TLVs -------------------------------------------------------------------------


def test_crc32c_known_values() -> None:
    """proxy-protocol.txt 2.2.3 uses CRC32c as RFC 4960 appendix B; the check
    value, and the RFC 3720 B.4 vectors."""
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


def test_crc32c_tlv_is_verified() -> None:
    """proxy-protocol.txt 2.2.3: the checksum of the whole header, computed with
    the checksum field zeroed, stored in network order."""
    unsigned = v2(0x21, 0x11, IPV4_BLOCK + tlv(1, b"smtp") + tlv(3, bytes(4)))
    value = crc32c(unsigned).to_bytes(4, "big")
    signed = unsigned[:-4] + value
    header, leftover = parse(signed + SMTP)
    assert header.tlvs == ((1, b"smtp"), (3, value))
    assert leftover == SMTP
    message, offset = refusal(unsigned)
    assert offset == 38
    assert message == (
        f"PROXY header: expected the CRC32C 0x{crc32c(unsigned):08x} at offset 38, got 0x00000000"
    )


def test_crc32c_mismatch_anywhere_in_the_header_is_refused() -> None:
    """proxy-protocol.txt 2.2.3: "If it is not, the receiver MUST treat the TCP
    connection providing the header as invalid"."""
    signed = write_v2(
        ProxyHeader(2, PROXY, INET, STREAM, ("192.0.2.1", 1), ("192.0.2.2", 2), ((1, b"h2"),)),
        checksum=True,
    )
    for position in range(16, len(signed)):
        if 28 <= position < 31 or 33 <= position < 36:
            continue  # TLV type and length octets: a change there is a framing error
        damaged = bytearray(signed)
        damaged[position] ^= 0x01
        message, _ = refusal(bytes(damaged))
        assert "CRC32C" in message, position


def test_two_crc32c_tlvs_are_refused() -> None:
    """proxy-protocol.txt 2.2.3: one checksum field; two would be ambiguous."""
    data = v2(0x21, 0x11, IPV4_BLOCK + tlv(3, bytes(4)) + tlv(3, bytes(4)))
    assert refusal(data) == (
        "PROXY header: expected at most one CRC32C TLV at offset 35, got a second one",
        35,
    )


def test_typed_tlv_helpers() -> None:
    """proxy-protocol.txt 2.2.1 to 2.2.8: ALPN, AUTHORITY, NOOP, UNIQUE_ID,
    NETNS, custom types; all kept in order, the first of a type answers."""
    tlvs = (
        tlv(0x01, b"smtp")
        + tlv(0x02, "mx.exämple".encode())
        + tlv(0x04, b"\x00\x00")
        + tlv(0x05, b"\x01" * 128)
        + tlv(0x30, b"blue")
        + tlv(0xE0, b"custom")
        + tlv(0x01, b"second")
    )
    header, _ = parse(v2(0x21, 0x11, IPV4_BLOCK + tlvs))
    assert header.alpn == b"smtp"
    assert header.authority == "mx.exämple"
    assert header.unique_id == b"\x01" * 128
    assert header.netns == "blue"
    assert header.ssl is None
    assert [tlv_type for tlv_type, _ in header.tlvs] == [1, 2, 4, 5, 0x30, 0xE0, 1]
    assert header.tlvs[5] == (0xE0, b"custom")


def test_helpers_are_none_without_their_tlv() -> None:
    """proxy-protocol.txt 2.2: TLVs are optional."""
    header, _ = parse(v2(0x21, 0x11, IPV4_BLOCK))
    assert (header.alpn, header.authority, header.unique_id, header.ssl, header.netns) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_ssl_tlv_typed_view() -> None:
    """proxy-protocol.txt 2.2.6: client flags, verify, then sub-TLVs."""
    value = (
        b"\x07"
        + b"\x00\x00\x00\x00"
        + tlv(0x21, b"TLSv1.3")
        + tlv(0x22, "client.exämple".encode())
        + tlv(0x23, b"ECDHE-RSA-AES128-GCM-SHA256")
        + tlv(0x24, b"RSA-SHA256")
        + tlv(0x25, b"RSA2048")
        + tlv(0x2A, b"\xff")
    )
    header, _ = parse(v2(0x21, 0x11, IPV4_BLOCK + tlv(0x20, value)))
    ssl = header.ssl
    assert ssl is not None
    assert (ssl.client, ssl.verify) == (7, 0)
    assert ssl.is_ssl and ssl.has_certificate_in_connection and ssl.has_certificate_in_session
    assert ssl.is_verified
    assert ssl.version == "TLSv1.3"
    assert ssl.common_name == "client.exämple"
    assert ssl.cipher == "ECDHE-RSA-AES128-GCM-SHA256"
    assert ssl.signature_algorithm == "RSA-SHA256"
    assert ssl.key_algorithm == "RSA2048"
    assert ssl.sub_tlvs[-1] == (0x2A, b"\xff")
    assert ssl.encode() == value
    assert ProxySsl(7, 0, ssl.sub_tlvs) == ssl


def test_ssl_tlv_without_certificate() -> None:
    """proxy-protocol.txt 2.2.6: verify is non-zero unless a certificate was
    presented and verified."""
    ssl = ProxySsl(0x01, 1, ((ProxySslSubtype.VERSION, b"TLSv1.2"),))
    sent = ProxyHeader(
        2,
        PROXY,
        INET,
        STREAM,
        ("192.0.2.1", 1),
        ("192.0.2.2", 25),
        ((ProxyTlvType.SSL, ssl.encode()),),
    )
    header, _ = parse(write_v2(sent))
    assert header.ssl == ssl
    assert header.ssl is not None
    assert header.ssl.is_ssl and not header.ssl.has_certificate_in_connection
    assert not header.ssl.is_verified and header.ssl.common_name is None


# --- the parser's API ---------------------------------------------------------------


def test_leftover_holds_every_byte_after_the_header() -> None:
    """proxy-protocol.txt 2.1: "once the header is parsed, it is easy to skip
    it from the input buffers"; what follows is the SMTP stream, untouched."""
    parser = ProxyParser()
    with pytest.raises(LocalProtocolError):
        _ = parser.leftover
    parser.receive_data(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2")
    assert parser.next() is NEED_DATA
    parser.receive_data(b"5\r\nEHLO a\r")
    header = parser.next()
    assert isinstance(header, ProxyHeader) and header.destination == ("192.0.2.2", 25)
    assert parser.leftover == b"EHLO a\r"
    parser.receive_data(b"\n\x00\xff")
    parser.receive_data(b"")
    assert parser.next() == header
    assert parser.leftover == b"EHLO a\r\n\x00\xff"


def test_error_is_raised_again_and_later_bytes_are_dropped() -> None:
    """RemoteProtocolError: the connection is unusable and raises it again."""
    parser = ProxyParser()
    parser.receive_data(b"HELO")
    with pytest.raises(ProxyError) as first:
        parser.next()
    parser.receive_data(b"more")
    with pytest.raises(ProxyError) as second:
        parser.next()
    assert first.value is second.value
    assert isinstance(first.value, RemoteProtocolError) and first.value.reply is None
    with pytest.raises(LocalProtocolError):
        _ = parser.leftover


def test_receive_data_after_end_of_stream_is_a_local_error() -> None:
    """The h11 convention: b"" means the peer closed, for good."""
    parser = ProxyParser()
    parser.receive_data(b"PROXY UNKNOWN\r\n")
    parser.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        parser.receive_data(b"x")


@pytest.mark.parametrize(
    "options",
    [
        {"versions": frozenset()},
        {"versions": frozenset({3})},
        {"max_tlv_size": -1},
        {"max_tlv_size": 65536},
        {"max_tlv_size": True},
    ],
)
def test_invalid_parser_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        ProxyParser(**options)  # type: ignore[arg-type]


# --- writers and the header value ------------------------------------------------


def test_write_v1_exact_bytes() -> None:
    """proxy-protocol.txt 2.1."""
    header = ProxyHeader(1, PROXY, INET6, STREAM, ("2001:DB8::0:1", 1025), ("::1", 25))
    assert write_v1(header) == b"PROXY TCP6 2001:db8::1 ::1 1025 25\r\n"
    assert write_v1(UNKNOWN_V1) == b"PROXY UNKNOWN\r\n"


def test_write_v2_exact_bytes() -> None:
    """proxy-protocol.txt 2.2."""
    header = ProxyHeader(2, PROXY, INET, STREAM, ("192.0.2.1", 56324), ("198.51.100.2", 25))
    assert write_v2(header) == v2(0x21, 0x11, IPV4_BLOCK)
    assert write_v2(ProxyHeader(2, LOCAL, UNSPEC, NO_TRANSPORT)) == SIGNATURE + b"\x20\x00\x00\x00"
    assert write_v2(ProxyHeader(2, LOCAL, INET, STREAM)) == SIGNATURE + b"\x20\x11\x00\x00"


def test_write_v2_checksum() -> None:
    """proxy-protocol.txt 2.2.3: the sender zeroes the field, then fills it in."""
    header = ProxyHeader(2, PROXY, INET, STREAM, ("192.0.2.1", 56324), ("198.51.100.2", 25))
    data = write_v2(header, checksum=True)
    assert data[:-7] == v2(0x21, 0x11, IPV4_BLOCK + tlv(3, bytes(4)))[:-7]
    assert data[-7:-4] == b"\x03\x00\x04"
    assert data[-4:] == crc32c(data[:-4] + bytes(4)).to_bytes(4, "big")
    stale = dataclasses.replace(header, tlvs=((3, b"\xde\xad\xbe\xef"),))
    assert write_v2(stale) == data


def _fields(header: ProxyHeader) -> tuple[object, ...]:
    return (
        header.version,
        header.command,
        header.family,
        header.transport,
        header.source,
        header.destination,
        header.tlvs,
    )


def test_writers_refuse_the_other_version() -> None:
    with pytest.raises(LocalProtocolError):
        write_v1(ProxyHeader(2, LOCAL, UNSPEC, NO_TRANSPORT))
    with pytest.raises(LocalProtocolError):
        write_v2(UNKNOWN_V1)


@pytest.mark.parametrize(
    "arguments",
    [
        (3, LOCAL, UNSPEC, NO_TRANSPORT),
        (True, LOCAL, UNSPEC, NO_TRANSPORT),
        (2, 1, INET, STREAM, ("1.2.3.4", 1), ("1.2.3.4", 2)),
        (2, PROXY, INET, NO_TRANSPORT, ("1.2.3.4", 1), ("1.2.3.4", 2)),
        (2, PROXY, INET, STREAM, ("::1", 1), ("1.2.3.4", 2)),
        (2, PROXY, INET, STREAM, ("01.2.3.4", 1), ("1.2.3.4", 2)),
        (2, PROXY, INET6, STREAM, ("fe80::1%eth0", 1), ("::1", 2)),
        (2, PROXY, INET, STREAM, ("1.2.3.4", 65536), ("1.2.3.4", 2)),
        (2, PROXY, INET, STREAM, ("1.2.3.4", True), ("1.2.3.4", 2)),
        (2, PROXY, INET, STREAM, "1.2.3.4", ("1.2.3.4", 2)),
        (2, PROXY, UNIX, STREAM, "/a\x00b", "/c"),
        (2, PROXY, UNIX, STREAM, "/" * 109, "/c"),
        (2, LOCAL, INET, STREAM, ("1.2.3.4", 1), None),
        (2, PROXY, UNSPEC, NO_TRANSPORT, None, "/c"),
        (1, PROXY, INET, DGRAM, ("1.2.3.4", 1), ("1.2.3.4", 2)),
        (1, PROXY, UNIX, STREAM, "/a", "/b"),
        (1, LOCAL, UNSPEC, NO_TRANSPORT, None, None, ((4, b""),)),
        (2, LOCAL, UNSPEC, NO_TRANSPORT, None, None, ((256, b""),)),
        (2, LOCAL, UNSPEC, NO_TRANSPORT, None, None, ((4, "text"),)),
        (2, LOCAL, UNSPEC, NO_TRANSPORT, None, None, ((3, b"abc"),)),
        (2, LOCAL, UNSPEC, NO_TRANSPORT, None, None, ((3, bytes(4)), (3, bytes(4)))),
        (2, LOCAL, UNSPEC, NO_TRANSPORT, None, None, ((0x20, b"\x01"),)),
        (2, LOCAL, UNSPEC, NO_TRANSPORT, None, None, ((2, b"\xff"),)),
        (2, LOCAL, UNSPEC, NO_TRANSPORT, None, None, ((4, bytes(40000)), (4, bytes(40000)))),
    ],
)
def test_invalid_headers_cannot_be_built(arguments: tuple[object, ...]) -> None:
    """proxy-protocol.txt 2.1 and 2.2: what a sender must not emit."""
    with pytest.raises(LocalProtocolError):
        ProxyHeader(*arguments)  # type: ignore[arg-type]


def test_built_headers_are_normalised() -> None:
    header = ProxyHeader(
        2,
        PROXY,
        INET6,
        STREAM,
        ("2001:DB8:0::1", 1),
        ("::FFFF:1.2.3.4", 2),
        [(ProxyTlvType.ALPN, b"x")],  # type: ignore[arg-type]
    )
    assert header.source == ("2001:db8::1", 1)
    assert header.destination == ("::ffff:102:304", 2)
    assert header.tlvs == ((1, b"x"),) and isinstance(header.tlvs, tuple)


def test_proxy_error_pickles() -> None:
    error = ProxyError("PROXY header: expected x at offset 3, got y", 3)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.offset) == (str(error), 3)


# --- properties ---------------------------------------------------------------------

ports = st.integers(0, 65535)
unix_paths = (
    st.binary(max_size=108)
    .filter(lambda raw: b"\x00" not in raw)
    .map(lambda raw: raw.decode("utf-8", "surrogateescape"))
)
ascii_text = st.text(st.characters(max_codepoint=127), max_size=30).map(str.encode)
utf8_text = st.text(st.characters(codec="utf-8"), max_size=30).map(str.encode)
TYPED = {0x02, 0x03, 0x05, 0x20, 0x30}
SSL_TEXT = {0x21, 0x23, 0x24, 0x25}
ssl_sub_tlvs = st.one_of(
    st.tuples(st.sampled_from(sorted(SSL_TEXT)), ascii_text),
    st.tuples(st.just(0x22), utf8_text),
    st.tuples(
        st.integers(0, 255).filter(lambda kind: kind not in SSL_TEXT | {0x22}),
        st.binary(max_size=20),
    ),
)
ssl_values = st.builds(
    ProxySsl,
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.lists(ssl_sub_tlvs, max_size=4).map(tuple),
).map(ProxySsl.encode)
tlvs = st.one_of(
    st.tuples(st.integers(0, 255).filter(lambda kind: kind not in TYPED), st.binary(max_size=40)),
    st.tuples(st.just(0x02), utf8_text),
    st.tuples(st.just(0x05), st.binary(max_size=128)),
    st.tuples(st.just(0x30), ascii_text),
    st.tuples(st.just(0x20), ssl_values),
)


@st.composite
def v1_headers(draw: st.DrawFn) -> ProxyHeader:
    family = draw(st.sampled_from([INET, INET6, UNSPEC]))
    if family is UNSPEC:
        return UNKNOWN_V1
    addresses = st.ip_addresses(v=4 if family is INET else 6).map(str)
    return ProxyHeader(
        1,
        PROXY,
        family,
        STREAM,
        (draw(addresses), draw(ports)),
        (draw(addresses), draw(ports)),
    )


@st.composite
def v2_headers(draw: st.DrawFn) -> ProxyHeader:
    command = draw(st.sampled_from(ProxyCommand))
    family, transport = draw(st.sampled_from(FAMILY_TRANSPORTS))
    source: tuple[str, int] | str | None = None
    destination: tuple[str, int] | str | None = None
    if command is PROXY and family in (INET, INET6):
        addresses = st.ip_addresses(v=4 if family is INET else 6).map(str)
        source = (draw(addresses), draw(ports))
        destination = (draw(addresses), draw(ports))
    elif command is PROXY and family is UNIX:
        source, destination = draw(unix_paths), draw(unix_paths)
    return ProxyHeader(
        2, command, family, transport, source, destination, tuple(draw(st.lists(tlvs, max_size=6)))
    )


def encode(header: ProxyHeader) -> bytes:
    return write_v1(header) if header.version == 1 else write_v2(header)


headers = st.one_of(v1_headers(), v2_headers())
smtp_bytes = st.one_of(st.just(b""), st.just(SMTP), st.binary(max_size=30))


@settings(max_examples=300, deadline=None)
@given(headers, smtp_bytes)
def test_written_headers_parse_back_to_themselves(header: ProxyHeader, rest: bytes) -> None:
    """proxy-protocol.txt 2.1, 2.2: parse(write(h)) == h, the rest untouched."""
    assert parse(encode(header) + rest, max_tlv_size=65535) == (header, rest)


@settings(max_examples=200, deadline=None)
@given(v2_headers())
def test_checksummed_headers_parse_back(header: ProxyHeader) -> None:
    """proxy-protocol.txt 2.2.3: a header written with a checksum verifies, and
    writing the parsed header again gives the same octets."""
    data = write_v2(header, checksum=True)
    parsed, _ = parse(data, max_tlv_size=65535)
    assert _fields(parsed)[:6] == _fields(header)[:6]
    assert parsed.tlvs[:-1] == header.tlvs and parsed.tlvs[-1][0] == ProxyTlvType.CRC32C
    assert write_v2(parsed) == data


@settings(max_examples=200, deadline=None)
@given(headers, smtp_bytes, st.data())
@example(UNKNOWN_V1, SMTP, None)
@example(ProxyHeader(2, LOCAL, UNSPEC, NO_TRANSPORT), b"", None)
def test_any_split_gives_the_same_header_and_leftover(
    header: ProxyHeader, rest: bytes, data: st.DataObject | None
) -> None:
    """proxy-protocol.txt 2: "nothing forces any intermediary to forward the
    whole header at once": any split, one octet at a time included, gives the
    same header and leftover."""
    wire = encode(header) + rest
    expected = outcome(wire, max_tlv_size=65535)
    assert expected == ("header", header, rest)
    assert outcome(wire, range(len(wire)), max_tlv_size=65535) == expected
    if data is not None:
        cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
        assert outcome(wire, cuts, max_tlv_size=65535) == expected


@st.composite
def damaged_headers(draw: st.DrawFn) -> bytes:
    """A valid header with some octets replaced, cut short or extended."""
    wire = bytearray(encode(draw(headers)) + draw(smtp_bytes))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(wire) - 1))
        wire[position] = draw(
            st.sampled_from([0x00, 0x0A, 0x0D, 0x20, 0x30, 0xFF, wire[position] ^ 1])
        )
    if draw(st.booleans()):
        del wire[draw(st.integers(0, len(wire))) :]
    return bytes(wire)


@settings(max_examples=300, deadline=None)
@given(st.one_of(damaged_headers(), st.binary(max_size=300)), st.data())
@example(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", None)
@example(SIGNATURE + b"\x21\x11\x00\x0c" + IPV4_BLOCK[:5], None)
def test_any_split_gives_the_same_error(wire: bytes, data: st.DataObject | None) -> None:
    """proxy-protocol.txt 2.1: a verdict (header or refusal, and its offset)
    depends on the bytes, not on how reads cut them."""
    expected = outcome(wire)
    assert outcome(wire, range(len(wire))) == expected
    if data is not None:
        cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
        assert outcome(wire, cuts) == expected
        assert outcome(wire, cuts, eof=False) == outcome(wire, eof=False)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=120).map(lambda tail: b"PROXY " + tail),
        st.binary(max_size=300).map(lambda tail: SIGNATURE + b"\x21" + tail),
        damaged_headers(),
    ),
    st.booleans(),
)
def test_arbitrary_bytes_raise_only_proxy_error(wire: bytes, eof: bool) -> None:
    """proxy-protocol.txt 2.1: a receiver aborts on anything else; the parser
    says so with ProxyError and nothing else, and whatever it accepts is a
    header the public constructor accepts too (the parser is no laxer)."""
    parser = ProxyParser()
    try:
        if wire:
            parser.receive_data(wire)
        if eof:
            parser.receive_data(b"")
        result = parser.next()
    except ProxyError as error:
        assert f"at offset {error.offset}" in str(error)
        assert 0 <= error.offset <= len(wire)
        return
    if result is NEED_DATA:
        assert not eof
        # Still waiting means fewer octets than the largest acceptable header.
        assert len(wire) < 16 + 216 + 4096
        return
    assert isinstance(result, ProxyHeader)
    assert ProxyHeader(*_fields(result)) == result  # type: ignore[arg-type]
    assert wire.endswith(parser.leftover)

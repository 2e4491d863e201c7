# The PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt): the
# header a load balancer puts in front of the SMTP stream to say who the
# client really is. A server connection that sits behind such a proxy feeds
# its first bytes to a ProxyParser, takes the header, and hands ``leftover``
# to its ServerConnection before sending the greeting (section 2: "The
# receiver MUST NOT start processing the connection before it receives a
# complete and valid PROXY protocol header").
#
# Strategy: every octet is looked at once, in order, and refused at the first
# octet no valid header can continue from, so the verdict and the offset it
# names depend on the bytes only, never on how they were split into reads.
# Version 1 is checked field by field as each field ends; version 2's fixed
# 16 octets one by one, after which the length field says exactly how much
# more to wait for, and is refused before any of it is buffered when that is
# more than the limits allow. Nothing after the header is looked at: it is the
# SMTP stream, handed back untouched through ``leftover``.
#
# Decisions a reader must know:
# - v1 "UNKNOWN" and v2 LOCAL both come out as command LOCAL with no
#   addresses: use the real connection's. A v2 LOCAL header's address block
#   is skipped unread (its family byte is still checked and reported), and
#   any TLVs after it are parsed.
# - Only the seven family/transport octets section 2.2 lists are accepted.
# - TLVs whose value the spec defines (CRC32C, UNIQUE_ID, AUTHORITY, NETNS,
#   SSL and its sub-TLVs) are checked on receipt, so the helper properties
#   never fail on a parsed header; other types are kept as opaque bytes.
from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from ._util import NEED_DATA, LocalProtocolError, RemoteProtocolError, Sentinel

__all__ = [
    "ProxyCommand",
    "ProxyError",
    "ProxyFamily",
    "ProxyHeader",
    "ProxyParser",
    "ProxySsl",
    "ProxySslSubtype",
    "ProxyTlvType",
    "ProxyTransport",
    "crc32c",
    "write_v1",
    "write_v2",
]


class ProxyCommand(enum.IntEnum):
    """The command nibble of a v2 header (section 2.2). A v1 "UNKNOWN" line
    is reported as LOCAL: in both cases the real connection's addresses hold."""

    LOCAL = 0x0
    PROXY = 0x1


class ProxyFamily(enum.IntEnum):
    """The address family nibble (section 2.2); v1 TCP4 is INET, TCP6 INET6."""

    UNSPEC = 0x0
    INET = 0x1
    INET6 = 0x2
    UNIX = 0x3


class ProxyTransport(enum.IntEnum):
    """The transport nibble (section 2.2); v1 TCP4 and TCP6 are STREAM."""

    UNSPEC = 0x0
    STREAM = 0x1
    DGRAM = 0x2


class ProxyTlvType(enum.IntEnum):
    """The registered PP2_TYPE_* values (section 2.2)."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    NETNS = 0x30


class ProxySslSubtype(enum.IntEnum):
    """The PP2_SUBTYPE_SSL_* values found inside a PP2_TYPE_SSL TLV (2.2.6)."""

    VERSION = 0x21
    CN = 0x22
    CIPHER = 0x23
    SIG_ALG = 0x24
    KEY_ALG = 0x25


class ProxyError(RemoteProtocolError):
    """The bytes before the SMTP stream are not a valid PROXY header.

    Section 2.1: such a connection must be aborted, so ``reply`` is None (a
    proxy does not read SMTP replies). ``offset`` is where, counted from the
    first octet of the connection, the header went wrong.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset

    def __reduce__(self) -> tuple[type[ProxyError], tuple[str, int]]:
        return type(self), (str(self), self.offset)


Endpoint: TypeAlias = "tuple[str, int] | str | None"
Tlvs: TypeAlias = "tuple[tuple[int, bytes], ...]"

_V1_PREFIX = b"PROXY "
_V1_MAX_LINE = 107  # section 2.1: the worst case, CRLF included
_V1_PROTOCOLS = (b"TCP4", b"TCP6", b"UNKNOWN")
_V1_FIELDS = (
    "'TCP4', 'TCP6' or 'UNKNOWN'",
    "a source address",
    "a destination address",
    "a source port",
    "a destination port",
)
_IPV4_OCTETS = frozenset(b"0123456789.")
_IPV6_OCTETS = frozenset(b"0123456789abcdefABCDEF:.")
_DIGITS = frozenset(b"0123456789")
_IPV4_MAX_TEXT = len("255.255.255.255")
_IPV6_MAX_TEXT = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")
_CR, _LF, _SP, _ZERO = 0x0D, 0x0A, 0x20, 0x30

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED_SIZE = 16
_UNIX_PATH_SIZE = 108
_ADDRESS_SIZES = {
    ProxyFamily.UNSPEC: 0,
    ProxyFamily.INET: 12,
    ProxyFamily.INET6: 36,
    ProxyFamily.UNIX: 2 * _UNIX_PATH_SIZE,
}
# Section 2.2, "In practice, the following protocol bytes are expected".
_FAMILY_TRANSPORTS = frozenset(
    {
        (ProxyFamily.UNSPEC, ProxyTransport.UNSPEC),
        (ProxyFamily.INET, ProxyTransport.STREAM),
        (ProxyFamily.INET, ProxyTransport.DGRAM),
        (ProxyFamily.INET6, ProxyTransport.STREAM),
        (ProxyFamily.INET6, ProxyTransport.DGRAM),
        (ProxyFamily.UNIX, ProxyTransport.STREAM),
        (ProxyFamily.UNIX, ProxyTransport.DGRAM),
    }
)
_UNIQUE_ID_MAX = 128  # section 2.2.5
_SSL_FIXED_SIZE = 5  # client (1 octet) and verify (4 octets), section 2.2.6
_PP2_CLIENT_SSL = 0x01
_PP2_CLIENT_CERT_CONN = 0x02
_PP2_CLIENT_CERT_SESS = 0x04


# CRC32C (Castagnoli), as RFC 4960 appendix B defines it and section 2.2.3
# requires: polynomial 0x1EDC6F41, processed bit-reversed (0x82F63B78), initial
# value and final XOR all ones, one table lookup per octet.
def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray) -> int:
    """The CRC32C (Castagnoli) checksum of ``data``, as PP2_TYPE_CRC32C holds it."""
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for octet in data:
        crc = table[(crc ^ octet) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class _Invalid(Exception):
    """A malformed value found by a check shared by the parser (which turns it
    into a ProxyError at an absolute offset) and the constructors (which turn
    it into a LocalProtocolError)."""

    def __init__(self, offset: int, expected: str, got: str) -> None:
        super().__init__(expected)
        self.offset = offset
        self.expected = expected
        self.got = got


def _refuse(offset: int, expected: str, got: str) -> ProxyError:
    return ProxyError(f"PROXY header: expected {expected} at offset {offset}, got {got}", offset)


def _show(data: bytes | bytearray | int) -> str:
    if isinstance(data, int):
        data = bytes((data,))
    return repr(bytes(data))


def _split_tlvs(data: bytes, start: int, end: int, what: str) -> list[tuple[int, int, bytes]]:
    """(offset, type, value) of each TLV in ``data[start:end]`` (section 2.2:
    one type octet, a two-octet big-endian length, the value)."""
    items = []
    position = start
    while position < end:
        if end - position < 3:
            raise _Invalid(
                position,
                f"a 3-octet {what} header (type, length)",
                f"{end - position} octet(s) before the end of the block",
            )
        tlv_type = data[position]
        length = int.from_bytes(data[position + 1 : position + 3], "big")
        value_start = position + 3
        if value_start + length > end:
            raise _Invalid(
                position,
                f"a {what} that fits in its block",
                f"type 0x{tlv_type:02x} claiming {length} octets with {end - value_start} left",
            )
        items.append((position, tlv_type, data[value_start : value_start + length]))
        position = value_start + length
    return items


def _check_text(value: bytes, encoding: str, expected: str) -> None:
    try:
        value.decode(encoding)
    except UnicodeDecodeError as error:
        raise _Invalid(error.start, expected, _show(value[error.start : error.start + 1])) from None


_SSL_TEXT = {
    ProxySslSubtype.VERSION: ("ascii", "a US-ASCII SSL version"),
    ProxySslSubtype.CN: ("utf-8", "a UTF-8 SSL common name"),
    ProxySslSubtype.CIPHER: ("ascii", "a US-ASCII SSL cipher"),
    ProxySslSubtype.SIG_ALG: ("ascii", "a US-ASCII SSL signature algorithm"),
    ProxySslSubtype.KEY_ALG: ("ascii", "a US-ASCII SSL key algorithm"),
}


def _check_ssl_value(value: bytes) -> list[tuple[int, int, bytes]]:
    """Section 2.2.6: client (1), verify (4), then sub-TLVs filling the rest."""
    if len(value) < _SSL_FIXED_SIZE:
        raise _Invalid(0, "an SSL TLV of at least 5 octets (client, verify)", f"{len(value)}")
    items = _split_tlvs(value, _SSL_FIXED_SIZE, len(value), "SSL sub-TLV")
    for offset, sub_type, sub_value in items:
        if sub_type in _SSL_TEXT:
            encoding, expected = _SSL_TEXT[ProxySslSubtype(sub_type)]
            try:
                _check_text(sub_value, encoding, expected)
            except _Invalid as problem:
                raise _Invalid(offset + 3 + problem.offset, problem.expected, problem.got) from None
    return items


def _check_tlv_value(tlv_type: int, value: bytes) -> None:
    """Checks the values the spec defines; offsets are from the value's start."""
    if tlv_type == ProxyTlvType.CRC32C:
        if len(value) != 4:
            raise _Invalid(0, "a 4-octet CRC32C value", f"{len(value)} octets")
    elif tlv_type == ProxyTlvType.UNIQUE_ID:
        if len(value) > _UNIQUE_ID_MAX:
            raise _Invalid(0, "a UNIQUE_ID of at most 128 octets", f"{len(value)} octets")
    elif tlv_type == ProxyTlvType.AUTHORITY:
        _check_text(value, "utf-8", "a UTF-8 AUTHORITY")
    elif tlv_type == ProxyTlvType.NETNS:
        _check_text(value, "ascii", "a US-ASCII NETNS name")
    elif tlv_type == ProxyTlvType.SSL:
        _check_ssl_value(value)


def _check_items(items: Iterable[tuple[int, bytes]], owner: str) -> tuple[tuple[int, bytes], ...]:
    """TLVs given by a user, as a tuple of (int, bytes); LocalProtocolError
    names the first bad one."""
    checked = []
    for index, item in enumerate(items):
        where = f"{owner}[{index}]"
        if not isinstance(item, tuple) or len(item) != 2:
            raise LocalProtocolError(f"{where} must be a (type, value) tuple, got {item!r}")
        tlv_type, value = item
        if isinstance(tlv_type, bool) or not isinstance(tlv_type, int) or not 0 <= tlv_type <= 255:
            raise LocalProtocolError(f"{where}: type must be an int in 0..255, got {tlv_type!r}")
        if not isinstance(value, (bytes, bytearray)):
            raise LocalProtocolError(f"{where}: value must be bytes, got {value!r}")
        if len(value) > 0xFFFF:
            raise LocalProtocolError(f"{where}: value must be at most 65535 octets")
        checked.append((int(tlv_type), bytes(value)))
    return tuple(checked)


@dataclass(frozen=True, slots=True)
class ProxySsl:
    """The value of a PP2_TYPE_SSL TLV (section 2.2.6): the client flags, the
    verify result, and the sub-TLVs in order. Build one and ``encode()`` it to
    put it in a header as ``(ProxyTlvType.SSL, ssl.encode())``."""

    client: int
    verify: int
    sub_tlvs: Tlvs = ()

    def __post_init__(self) -> None:
        if isinstance(self.client, bool) or not isinstance(self.client, int):
            raise LocalProtocolError(f"ProxySsl.client must be an int, got {self.client!r}")
        if not 0 <= self.client <= 0xFF:
            raise LocalProtocolError(f"ProxySsl.client must be in 0..255, got {self.client}")
        if isinstance(self.verify, bool) or not isinstance(self.verify, int):
            raise LocalProtocolError(f"ProxySsl.verify must be an int, got {self.verify!r}")
        if not 0 <= self.verify <= 0xFFFFFFFF:
            raise LocalProtocolError(f"ProxySsl.verify must fit 32 bits, got {self.verify}")
        sub_tlvs = _check_items(self.sub_tlvs, "ProxySsl.sub_tlvs")
        object.__setattr__(self, "sub_tlvs", sub_tlvs)
        encoded = self.encode()
        if len(encoded) > 0xFFFF:
            raise LocalProtocolError("ProxySsl: the encoded value must be at most 65535 octets")
        try:
            _check_ssl_value(encoded)
        except _Invalid as problem:
            raise LocalProtocolError(
                f"ProxySsl: expected {problem.expected}, got {problem.got} "
                f"(at octet {problem.offset} of the value)"
            ) from None

    def encode(self) -> bytes:
        """The TLV value: client, verify, then each sub-TLV."""
        parts = [bytes((self.client,)), self.verify.to_bytes(4, "big")]
        for sub_type, value in self.sub_tlvs:
            parts.append(bytes((sub_type,)) + len(value).to_bytes(2, "big") + value)
        return b"".join(parts)

    def _text(self, subtype: ProxySslSubtype) -> str | None:
        for sub_type, value in self.sub_tlvs:
            if sub_type == subtype:
                return value.decode(_SSL_TEXT[subtype][0])
        return None

    @property
    def is_ssl(self) -> bool:
        """PP2_CLIENT_SSL: the client connected over SSL/TLS."""
        return bool(self.client & _PP2_CLIENT_SSL)

    @property
    def has_certificate_in_connection(self) -> bool:
        """PP2_CLIENT_CERT_CONN: a client certificate came on this connection."""
        return bool(self.client & _PP2_CLIENT_CERT_CONN)

    @property
    def has_certificate_in_session(self) -> bool:
        """PP2_CLIENT_CERT_SESS: a client certificate came at least once in the
        TLS session this connection belongs to."""
        return bool(self.client & _PP2_CLIENT_CERT_SESS)

    @property
    def is_verified(self) -> bool:
        """``verify`` is zero: the client's certificate was presented and verified."""
        return self.verify == 0

    @property
    def version(self) -> str | None:
        """PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"."""
        return self._text(ProxySslSubtype.VERSION)

    @property
    def common_name(self) -> str | None:
        """PP2_SUBTYPE_SSL_CN: the client certificate's Common Name."""
        return self._text(ProxySslSubtype.CN)

    @property
    def cipher(self) -> str | None:
        """PP2_SUBTYPE_SSL_CIPHER, e.g. "ECDHE-RSA-AES128-GCM-SHA256"."""
        return self._text(ProxySslSubtype.CIPHER)

    @property
    def signature_algorithm(self) -> str | None:
        """PP2_SUBTYPE_SSL_SIG_ALG, e.g. "RSA-SHA256"."""
        return self._text(ProxySslSubtype.SIG_ALG)

    @property
    def key_algorithm(self) -> str | None:
        """PP2_SUBTYPE_SSL_KEY_ALG, e.g. "RSA2048"."""
        return self._text(ProxySslSubtype.KEY_ALG)


def _decode_ssl(value: bytes) -> ProxySsl:
    """A ProxySsl from a value the parser or the constructor has checked."""
    items = _split_tlvs(value, _SSL_FIXED_SIZE, len(value), "SSL sub-TLV")
    ssl = object.__new__(ProxySsl)
    object.__setattr__(ssl, "client", value[0])
    object.__setattr__(ssl, "verify", int.from_bytes(value[1:5], "big"))
    object.__setattr__(ssl, "sub_tlvs", tuple((sub_type, sub) for _, sub_type, sub in items))
    return ssl


def _check_ip_endpoint(name: str, value: object, family: ProxyFamily) -> tuple[str, int]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not isinstance(value[0], str)
        or isinstance(value[1], bool)
        or not isinstance(value[1], int)
    ):
        raise LocalProtocolError(f"ProxyHeader.{name} must be an (ip, port) tuple, got {value!r}")
    text, port = value
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        if family is ProxyFamily.INET:
            address = ipaddress.IPv4Address(text)
        else:
            address = ipaddress.IPv6Address(text)
    except ValueError:
        raise LocalProtocolError(
            f"ProxyHeader.{name}: expected an {family.name} address, got {text!r}"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise LocalProtocolError(f"ProxyHeader.{name}: a scope id cannot be sent, got {text!r}")
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"ProxyHeader.{name}: port must be in 0..65535, got {port}")
    return str(address), port


def _check_unix_endpoint(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(f"ProxyHeader.{name} must be a path (str), got {value!r}")
    try:
        encoded = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"ProxyHeader.{name}: cannot encode {value!r}") from None
    if b"\x00" in encoded or len(encoded) > _UNIX_PATH_SIZE:
        raise LocalProtocolError(
            f"ProxyHeader.{name}: expected a path of at most 108 octets without NUL, got {value!r}"
        )
    return encoded.decode("utf-8", "surrogateescape")


def _unix_path(raw: bytes) -> str:
    # sun_path is NUL-terminated unless it fills all 108 octets.
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A PROXY protocol header (proxy-protocol.txt sections 2.1 and 2.2).

    ``source`` and ``destination`` are ``(ip, port)`` for INET and INET6 (the
    ip in its canonical text form), a path for UNIX, and None for a LOCAL
    command (v1 UNKNOWN) or the UNSPEC family: the server then uses the real
    connection's addresses. ``tlvs`` are the v2 TLVs, in order. Built by a
    user, the header is checked (LocalProtocolError names the bad field) and
    its addresses normalised; one a parser returns has already been checked.
    """

    version: int
    command: ProxyCommand
    family: ProxyFamily
    transport: ProxyTransport
    source: Endpoint = None
    destination: Endpoint = None
    tlvs: Tlvs = ()

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or self.version not in (1, 2):
            raise LocalProtocolError(f"ProxyHeader.version must be 1 or 2, got {self.version!r}")
        for name, kind in (
            ("command", ProxyCommand),
            ("family", ProxyFamily),
            ("transport", ProxyTransport),
        ):
            if not isinstance(getattr(self, name), kind):
                raise LocalProtocolError(
                    f"ProxyHeader.{name} must be a {kind.__name__}, got {getattr(self, name)!r}"
                )
        if (self.family, self.transport) not in _FAMILY_TRANSPORTS:
            raise LocalProtocolError(
                f"ProxyHeader: {self.family.name} with {self.transport.name} is not a "
                "combination section 2.2 allows"
            )
        if self.version == 1 and (self.command, self.family, self.transport) not in (
            (ProxyCommand.PROXY, ProxyFamily.INET, ProxyTransport.STREAM),
            (ProxyCommand.PROXY, ProxyFamily.INET6, ProxyTransport.STREAM),
            (ProxyCommand.LOCAL, ProxyFamily.UNSPEC, ProxyTransport.UNSPEC),
        ):
            raise LocalProtocolError(
                "ProxyHeader: version 1 carries only TCP over INET or INET6 (PROXY, STREAM) "
                "or UNKNOWN (LOCAL, UNSPEC, UNSPEC), got "
                f"{self.command.name}, {self.family.name}, {self.transport.name}"
            )
        for name in ("source", "destination"):
            value = getattr(self, name)
            if self.command is ProxyCommand.LOCAL or self.family is ProxyFamily.UNSPEC:
                if value is not None:
                    raise LocalProtocolError(
                        f"ProxyHeader.{name} must be None for {self.command.name} "
                        f"{self.family.name}, got {value!r}"
                    )
            elif self.family is ProxyFamily.UNIX:
                object.__setattr__(self, name, _check_unix_endpoint(name, value))
            else:
                object.__setattr__(self, name, _check_ip_endpoint(name, value, self.family))
        tlvs = _check_items(self.tlvs, "ProxyHeader.tlvs")
        if self.version == 1 and tlvs:
            raise LocalProtocolError("ProxyHeader.tlvs must be empty for version 1")
        checksums = 0
        for index, (tlv_type, value) in enumerate(tlvs):
            try:
                _check_tlv_value(tlv_type, value)
            except _Invalid as problem:
                raise LocalProtocolError(
                    f"ProxyHeader.tlvs[{index}]: expected {problem.expected}, got {problem.got}"
                ) from None
            checksums += tlv_type == ProxyTlvType.CRC32C
        if checksums > 1:
            raise LocalProtocolError("ProxyHeader.tlvs may hold at most one CRC32C TLV")
        size = _ADDRESS_SIZES[self.family] + sum(3 + len(value) for _, value in tlvs)
        if size > 0xFFFF:
            raise LocalProtocolError(
                f"ProxyHeader: addresses and TLVs take {size} octets, more than the 65535 "
                "a version 2 length field can say"
            )
        object.__setattr__(self, "tlvs", tlvs)

    def _first(self, tlv_type: ProxyTlvType) -> bytes | None:
        for found, value in self.tlvs:
            if found == tlv_type:
                return value
        return None

    @property
    def alpn(self) -> bytes | None:
        """PP2_TYPE_ALPN (2.2.1): the protocol negotiated with ALPN, e.g. b"h2"."""
        return self._first(ProxyTlvType.ALPN)

    @property
    def authority(self) -> str | None:
        """PP2_TYPE_AUTHORITY (2.2.2): the host name the client asked for (SNI)."""
        value = self._first(ProxyTlvType.AUTHORITY)
        return None if value is None else value.decode("utf-8")

    @property
    def unique_id(self) -> bytes | None:
        """PP2_TYPE_UNIQUE_ID (2.2.5): the proxy's opaque id of the connection."""
        return self._first(ProxyTlvType.UNIQUE_ID)

    @property
    def ssl(self) -> ProxySsl | None:
        """PP2_TYPE_SSL (2.2.6): how the client spoke TLS to the proxy."""
        value = self._first(ProxyTlvType.SSL)
        return None if value is None else _decode_ssl(value)

    @property
    def netns(self) -> str | None:
        """PP2_TYPE_NETNS (2.2.7): the name of the proxy's network namespace."""
        value = self._first(ProxyTlvType.NETNS)
        return None if value is None else value.decode("ascii")


def _trusted_header(
    version: int,
    command: ProxyCommand,
    family: ProxyFamily,
    transport: ProxyTransport,
    source: Endpoint,
    destination: Endpoint,
    tlvs: Tlvs,
) -> ProxyHeader:
    """A header from fields the parser has already checked (skips __post_init__)."""
    header = object.__new__(ProxyHeader)
    for name, value in (
        ("version", version),
        ("command", command),
        ("family", family),
        ("transport", transport),
        ("source", source),
        ("destination", destination),
        ("tlvs", tlvs),
    ):
        object.__setattr__(header, name, value)
    return header


_UNKNOWN_V1 = _trusted_header(
    1, ProxyCommand.LOCAL, ProxyFamily.UNSPEC, ProxyTransport.UNSPEC, None, None, ()
)


class _V1Reader:
    """Section 2.1: "PROXY" SP protocol [SP src SP dst SP sport SP dport] CRLF,
    at most 107 octets. Each octet is checked as it arrives, each field as
    soon as the space or CR ending it does."""

    __slots__ = (
        "_after_cr",
        "_candidates",
        "_field_start",
        "_in_unknown_tail",
        "_scanned",
        "_values",
    )

    def __init__(self) -> None:
        self._scanned = 0
        self._field_start = len(_V1_PREFIX)
        self._values: list[bytes | str | int] = []  # protocol, addresses, ports
        self._candidates: tuple[bytes, ...] = _V1_PROTOCOLS  # what the first field may become
        self._after_cr = False
        self._in_unknown_tail = False

    def expected_at_end(self) -> str:
        return "the rest of a version 1 line and its CRLF"

    def advance(self, data: bytearray) -> tuple[ProxyHeader, int] | None:
        for offset in range(self._scanned, min(len(data), _V1_MAX_LINE)):
            self._scanned = offset + 1
            if self._step(data, offset):
                return self._header(), offset + 1
            if offset == _V1_MAX_LINE - 1:
                raise _refuse(
                    offset, "a CRLF ending the line within 107 octets", _show(data[offset])
                )
        return None

    def _step(self, data: bytearray, offset: int) -> bool:
        """Checks one octet; True once it is the LF that ends the line."""
        octet = data[offset]
        if offset < len(_V1_PREFIX):
            if octet != _V1_PREFIX[offset]:
                raise _refuse(0, "'PROXY '", _show(data[: offset + 1]))
            return False
        if self._after_cr:
            if octet != _LF:
                raise _refuse(offset, "LF after CR", _show(octet))
            return True
        if octet == _LF:
            raise _refuse(offset, "CRLF (a bare LF does not end the line)", _show(octet))
        if octet == _CR:
            if not self._in_unknown_tail:
                self._end_field(data, offset, octet)
            self._after_cr = True
        elif self._in_unknown_tail:
            pass  # section 2.1: after UNKNOWN, anything up to the CRLF is ignored
        elif octet == _SP:
            self._end_field(data, offset, octet)
            self._field_start = offset + 1
        else:
            self._check_field_octet(data, offset, octet)
        return False

    def _check_field_octet(self, data: bytearray, offset: int, octet: int) -> None:
        index = len(self._values)
        start = self._field_start
        position = offset - start
        if index == 0:
            self._candidates = tuple(
                protocol
                for protocol in self._candidates
                if position < len(protocol) and protocol[position] == octet
            )
            if not self._candidates:
                raise _refuse(start, _V1_FIELDS[0], _show(data[start : offset + 1]))
        elif index in (1, 2):
            if self._values[0] == b"TCP4":
                allowed, longest, kind = _IPV4_OCTETS, _IPV4_MAX_TEXT, "an IPv4 address"
            else:
                allowed, longest, kind = _IPV6_OCTETS, _IPV6_MAX_TEXT, "an IPv6 address"
            if octet not in allowed or position >= longest:
                raise _refuse(start, kind, _show(data[start : offset + 1]))
        elif index in (3, 4):
            if octet not in _DIGITS:
                expected = "a decimal port"
            elif position > 0 and data[start] == _ZERO:
                expected = "a port without leading zeros"
            elif position >= len("65535"):
                expected = "a port in 0..65535"
            else:
                return
            raise _refuse(start, expected, _show(data[start : offset + 1]))
        else:  # pragma: no cover - the fifth field's SP is refused in _end_field
            raise AssertionError(index)

    def _end_field(self, data: bytearray, offset: int, terminator: int) -> None:
        index = len(self._values)
        start = self._field_start
        text = bytes(data[start:offset])
        if not text:
            raise _refuse(offset, _V1_FIELDS[index], _show(terminator))
        value: bytes | str | int
        if index == 0:
            if text not in _V1_PROTOCOLS:
                raise _refuse(start, _V1_FIELDS[0], _show(text))
            if text == b"UNKNOWN":
                self._in_unknown_tail = terminator == _SP
                self._values.append(text)
                return
            value = text
        elif index in (1, 2):
            value = _v1_address(text, self._values[0] == b"TCP4", start)
        else:
            value = int(text)
            if value > 0xFFFF:
                raise _refuse(start, "a port in 0..65535", _show(text))
        if index < 4 and terminator == _CR:
            raise _refuse(offset, f"' ' and {_V1_FIELDS[index + 1]}", _show(terminator))
        if index == 4 and terminator == _SP:
            raise _refuse(offset, "CRLF after the destination port", _show(terminator))
        self._values.append(value)

    def _header(self) -> ProxyHeader:
        if self._values[0] == b"UNKNOWN":
            return _UNKNOWN_V1
        protocol, source, destination, source_port, destination_port = self._values
        assert isinstance(source, str) and isinstance(destination, str)
        assert isinstance(source_port, int) and isinstance(destination_port, int)
        family = ProxyFamily.INET if protocol == b"TCP4" else ProxyFamily.INET6
        return _trusted_header(
            1,
            ProxyCommand.PROXY,
            family,
            ProxyTransport.STREAM,
            (source, source_port),
            (destination, destination_port),
            (),
        )


def _v1_address(text: bytes, is_ipv4: bool, offset: int) -> str:
    """Section 2.1: IPv4 as four decimal numbers without heading zeroes, IPv6
    as hexadecimal groups with at most one "::"; the octets were already
    restricted to those forms' alphabets, so no scope id can get through."""
    decoded = text.decode("ascii")
    try:
        if is_ipv4:
            if any(len(part) > 1 and part[0] == "0" for part in decoded.split(".")):
                raise _refuse(offset, "an IPv4 address without leading zeros", _show(text))
            return str(ipaddress.IPv4Address(decoded))
        return str(ipaddress.IPv6Address(decoded))
    except ValueError:
        kind = "an IPv4 address" if is_ipv4 else "an IPv6 address"
        raise _refuse(offset, kind, _show(text)) from None


class _V2Reader:
    """Section 2.2: the 12-octet signature, version and command, family and
    transport, a 16-bit length, then that many octets: the address block
    and the TLVs."""

    __slots__ = ("_command", "_family", "_length", "_max_tlv_size", "_scanned", "_transport")

    def __init__(self, max_tlv_size: int) -> None:
        self._max_tlv_size = max_tlv_size
        self._scanned = 0
        self._command = ProxyCommand.LOCAL
        self._family = ProxyFamily.UNSPEC
        self._transport = ProxyTransport.UNSPEC
        self._length = 0

    def expected_at_end(self) -> str:
        if self._scanned < _V2_FIXED_SIZE:
            return "the rest of the 16-octet version 2 header"
        return f"the rest of a version 2 header of {_V2_FIXED_SIZE + self._length} octets"

    def advance(self, data: bytearray) -> tuple[ProxyHeader, int] | None:
        for offset in range(self._scanned, min(len(data), _V2_FIXED_SIZE)):
            self._check_fixed_octet(data, offset)
            self._scanned = offset + 1
        if self._scanned < _V2_FIXED_SIZE:
            return None
        size = _V2_FIXED_SIZE + self._length
        if len(data) < size:
            return None
        return self._decode(bytes(data[:size])), size

    def _check_fixed_octet(self, data: bytearray, offset: int) -> None:
        octet = data[offset]
        if offset < len(_V2_SIGNATURE):
            if octet != _V2_SIGNATURE[offset]:
                raise _refuse(
                    0,
                    r"the version 2 signature b'\r\n\r\n\x00\r\nQUIT\n'",
                    _show(data[: offset + 1]),
                )
        elif offset == 12:
            if octet >> 4 != 2:
                raise _refuse(offset, "version 2 in the high nibble", f"0x{octet:02x}")
            if (octet & 0xF) not in (ProxyCommand.LOCAL, ProxyCommand.PROXY):
                raise _refuse(
                    offset, "command LOCAL (0) or PROXY (1) in the low nibble", f"0x{octet:02x}"
                )
            self._command = ProxyCommand(octet & 0xF)
        elif offset == 13:
            family, transport = octet >> 4, octet & 0xF
            if family > ProxyFamily.UNIX:
                raise _refuse(offset, "address family 0..3 in the high nibble", f"0x{octet:02x}")
            if transport > ProxyTransport.DGRAM:
                raise _refuse(offset, "transport 0..2 in the low nibble", f"0x{octet:02x}")
            self._family, self._transport = ProxyFamily(family), ProxyTransport(transport)
            if (self._family, self._transport) not in _FAMILY_TRANSPORTS:
                raise _refuse(
                    offset,
                    "family and transport 0x00, 0x11, 0x12, 0x21, 0x22, 0x31 or 0x32",
                    f"0x{octet:02x}",
                )
        elif offset == 15:
            self._length = length = int.from_bytes(data[14:16], "big")
            address_size = _ADDRESS_SIZES[self._family]
            if self._command is ProxyCommand.PROXY and length < address_size:
                raise _refuse(
                    14,
                    f"a length of at least {address_size} for {self._family.name} addresses",
                    f"{length}",
                )
            tlv_size = length - address_size if length >= address_size else 0
            if tlv_size > self._max_tlv_size:
                raise _refuse(
                    14,
                    f"a length of at most {address_size + self._max_tlv_size} "
                    f"({self._family.name} addresses and {self._max_tlv_size} octets of TLVs)",
                    f"{length}",
                )

    def _decode(self, block: bytes) -> ProxyHeader:
        address_size = _ADDRESS_SIZES[self._family]
        source: Endpoint = None
        destination: Endpoint = None
        if self._command is ProxyCommand.PROXY:
            source, destination = _v2_addresses(block[_V2_FIXED_SIZE:], self._family)
            tlv_start = _V2_FIXED_SIZE + address_size
        else:  # section 2.2: LOCAL discards the address block, whatever the family
            tlv_start = _V2_FIXED_SIZE + min(address_size, self._length)
        checksum_at = None
        tlvs = []
        try:
            for offset, tlv_type, value in _split_tlvs(block, tlv_start, len(block), "TLV"):
                try:
                    _check_tlv_value(tlv_type, value)
                except _Invalid as problem:
                    raise _Invalid(
                        offset + 3 + problem.offset, problem.expected, problem.got
                    ) from None
                if tlv_type == ProxyTlvType.CRC32C:
                    if checksum_at is not None:
                        raise _Invalid(offset, "at most one CRC32C TLV", "a second one")
                    checksum_at = offset + 3
                tlvs.append((tlv_type, value))
        except _Invalid as problem:
            raise _refuse(problem.offset, problem.expected, problem.got) from None
        if checksum_at is not None:
            # Section 2.2.3: the checksum covers the whole header with its own
            # four octets zeroed.
            sent = int.from_bytes(block[checksum_at : checksum_at + 4], "big")
            zeroed = block[:checksum_at] + bytes(4) + block[checksum_at + 4 :]
            computed = crc32c(zeroed)
            if sent != computed:
                raise _refuse(checksum_at, f"the CRC32C 0x{computed:08x}", f"0x{sent:08x}")
        return _trusted_header(
            2,
            self._command,
            self._family,
            self._transport,
            source,
            destination,
            tuple(tlvs),
        )


def _v2_addresses(block: bytes, family: ProxyFamily) -> tuple[Endpoint, Endpoint]:
    if family is ProxyFamily.INET:
        return (
            (str(ipaddress.IPv4Address(block[0:4])), int.from_bytes(block[8:10], "big")),
            (str(ipaddress.IPv4Address(block[4:8])), int.from_bytes(block[10:12], "big")),
        )
    if family is ProxyFamily.INET6:
        return (
            (str(ipaddress.IPv6Address(block[0:16])), int.from_bytes(block[32:34], "big")),
            (str(ipaddress.IPv6Address(block[16:32])), int.from_bytes(block[34:36], "big")),
        )
    if family is ProxyFamily.UNIX:
        return _unix_path(block[:_UNIX_PATH_SIZE]), _unix_path(block[_UNIX_PATH_SIZE:216])
    return None, None  # section 2.2: UNSPEC, "the receiver should ignore address information"


class ProxyParser:
    """Reads one PROXY header (version 1 or 2) from the start of a connection.

    Feed bytes with ``receive_data`` (``b""`` when the peer closed) and call
    ``next()`` until it returns the header instead of NEED_DATA; then pass
    ``leftover``, the first bytes of the SMTP stream, to the SMTP connection.
    ``next()`` raises ProxyError, again on every call, once the bytes cannot
    be a valid header: at the first octet that cannot start either version,
    as soon as a v1 line has 107 octets without a CRLF, or as soon as a v2
    length field asks for more than ``16 + <address block> + max_tlv_size``.
    So the parser never holds more than one header's worth of bytes.

    ``versions`` is which versions to accept; section 5: accept the header
    only on listeners configured for it, and only from trusted proxies.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_error",
        "_header",
        "_leftover",
        "_max_tlv_size",
        "_reader",
        "_versions",
    )

    def __init__(
        self, *, versions: frozenset[int] = frozenset({1, 2}), max_tlv_size: int = 4096
    ) -> None:
        if not versions or not versions <= {1, 2}:
            raise LocalProtocolError(
                f"ProxyParser: versions must be a non-empty subset of {{1, 2}}, got {versions!r}"
            )
        if isinstance(max_tlv_size, bool) or not isinstance(max_tlv_size, int):
            raise LocalProtocolError(
                f"ProxyParser: max_tlv_size must be an int, got {max_tlv_size!r}"
            )
        if not 0 <= max_tlv_size <= 0xFFFF:
            raise LocalProtocolError(
                f"ProxyParser: max_tlv_size must be in 0..65535, got {max_tlv_size}"
            )
        self._versions = frozenset(versions)
        self._max_tlv_size = max_tlv_size
        self._buffer = bytearray()
        self._reader: _V1Reader | _V2Reader | None = None
        self._header: ProxyHeader | None = None
        self._leftover = bytearray()
        self._error: ProxyError | None = None
        self._closed = False

    def receive_data(self, data: bytes) -> None:
        """Adds bytes from the peer; ``b""`` means the peer closed. Bytes that
        arrive after the header are kept for ``leftover``."""
        if self._closed:
            raise LocalProtocolError("ProxyParser.receive_data() after the end of the stream")
        if not data:
            self._closed = True
            if self._header is None and self._error is None:
                self._error = self._truncated()
                self._buffer = bytearray()
            return
        if self._error is not None:
            return  # the connection is to be aborted; keep nothing
        if self._header is not None:
            self._leftover += data
            return
        self._buffer += data
        try:
            done = self._advance()
        except ProxyError as error:
            self._error = error
            self._buffer = bytearray()
            return
        if done is not None:
            self._header, size = done
            self._leftover = self._buffer[size:]
            self._buffer = bytearray()

    def next(self) -> ProxyHeader | Sentinel:
        """The header once it is complete and valid (the same one on every
        call), NEED_DATA before that; raises ProxyError if it is not valid."""
        if self._error is not None:
            raise self._error
        if self._header is not None:
            return self._header
        return NEED_DATA

    @property
    def leftover(self) -> bytes:
        """The bytes received after the header: the start of the SMTP stream."""
        if self._header is None:
            raise LocalProtocolError("ProxyParser.leftover exists only once the header is complete")
        return bytes(self._leftover)

    def _advance(self) -> tuple[ProxyHeader, int] | None:
        if self._reader is None:
            self._reader = self._choose_reader(self._buffer[0])
        return self._reader.advance(self._buffer)

    def _choose_reader(self, first: int) -> _V1Reader | _V2Reader:
        # Section 2.2: the two signatures differ from their first octet on.
        if first == _V1_PREFIX[0] and 1 in self._versions:
            return _V1Reader()
        if first == _V2_SIGNATURE[0] and 2 in self._versions:
            return _V2Reader(self._max_tlv_size)
        expected = {
            frozenset({1}): "'PROXY ' (only version 1 is accepted)",
            frozenset({2}): "the version 2 signature (only version 2 is accepted)",
        }.get(self._versions, "'PROXY ' (version 1) or the version 2 signature")
        raise _refuse(0, expected, _show(first))

    def _truncated(self) -> ProxyError:
        if self._reader is None:
            return _refuse(0, "a PROXY header", "the end of the stream")
        return _refuse(len(self._buffer), self._reader.expected_at_end(), "the end of the stream")


def _ip_endpoint(value: Endpoint) -> tuple[str, int]:
    assert isinstance(value, tuple)
    return value


def write_v1(header: ProxyHeader) -> bytes:
    """The version 1 line for ``header`` (section 2.1), CRLF included; a LOCAL
    header becomes "PROXY UNKNOWN\\r\\n"."""
    if header.version != 1:
        raise LocalProtocolError(f"write_v1 needs a version 1 header, got version {header.version}")
    if header.command is ProxyCommand.LOCAL:
        return b"PROXY UNKNOWN\r\n"
    protocol = "TCP4" if header.family is ProxyFamily.INET else "TCP6"
    source, source_port = _ip_endpoint(header.source)
    destination, destination_port = _ip_endpoint(header.destination)
    line = f"PROXY {protocol} {source} {destination} {source_port} {destination_port}\r\n"
    return line.encode("ascii")


def write_v2(header: ProxyHeader, *, checksum: bool = False) -> bytes:
    """The version 2 header for ``header`` (section 2.2).

    A CRC32C TLV in ``header.tlvs`` gets the right checksum whatever value it
    held; ``checksum=True`` appends one when there is none (section 2.2.3).
    A LOCAL header carries no address unless TLVs follow, in which case a
    zeroed block of its family's size keeps them where a receiver looks.
    """
    if header.version != 2:
        raise LocalProtocolError(f"write_v2 needs a version 2 header, got version {header.version}")
    tlvs = list(header.tlvs)
    if checksum and all(tlv_type != ProxyTlvType.CRC32C for tlv_type, _ in tlvs):
        tlvs.append((ProxyTlvType.CRC32C, bytes(4)))
    body = bytearray(_v2_address_block(header, has_tlvs=bool(tlvs)))
    checksum_at = None
    for tlv_type, value in tlvs:
        if tlv_type == ProxyTlvType.CRC32C:
            checksum_at = _V2_FIXED_SIZE + len(body) + 3
            value = bytes(4)
        body += bytes((tlv_type,)) + len(value).to_bytes(2, "big") + value
    if len(body) > 0xFFFF:
        raise LocalProtocolError(f"write_v2: {len(body)} octets after the fixed header, over 65535")
    out = bytearray(_V2_SIGNATURE)
    out.append(0x20 | header.command)
    out.append(header.family << 4 | header.transport)
    out += len(body).to_bytes(2, "big")
    out += body
    if checksum_at is not None:
        out[checksum_at : checksum_at + 4] = crc32c(out).to_bytes(4, "big")
    return bytes(out)


def _v2_address_block(header: ProxyHeader, *, has_tlvs: bool) -> bytes:
    family = header.family
    if header.command is ProxyCommand.LOCAL:
        return bytes(_ADDRESS_SIZES[family]) if has_tlvs else b""
    if family is ProxyFamily.UNIX:
        paths = [
            str(path).encode("utf-8", "surrogateescape").ljust(_UNIX_PATH_SIZE, b"\x00")
            for path in (header.source, header.destination)
        ]
        return b"".join(paths)
    if family is ProxyFamily.UNSPEC:
        return b""
    source, source_port = _ip_endpoint(header.source)
    destination, destination_port = _ip_endpoint(header.destination)
    return (
        ipaddress.ip_address(source).packed
        + ipaddress.ip_address(destination).packed
        + source_port.to_bytes(2, "big")
        + destination_port.to_bytes(2, "big")
    )

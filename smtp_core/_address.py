# Mailboxes and the paths that carry them in MAIL FROM and RCPT TO
# (RFC 5321 sections 4.1.2, 4.1.3; RFC 6531 for UTF-8).
#
# Decisions a reader must know:
# - An Address holds the *meaning* of the local part: a quoted local part is
#   stored unquoted and __str__ writes the least quoting back, since 4.1.2 says
#   all quoted forms are equivalent and the minimum quoting should be sent.
#   Domains and address literals are kept exactly as written.
# - Non-ASCII is accepted wherever the RFC 6531 grammar allows it; whether the
#   session permits it (SMTPUTF8) is for the caller, who asks Address.is_ascii.
# - Source routes are parsed, checked and dropped (4.1.1.3, Appendix C).
# - One set of checks serves both doors: __post_init__ validates values a user
#   builds, the path scanner checks wire text once and then builds through
#   _trusted_address, which skips __post_init__. A parsed value is always one
#   __post_init__ would accept.
# - MAIL and RCPT are parsed on every transaction, so a plain ASCII
#   <local@domain.tld> is matched by one regex; everything else, and every
#   error message, goes through the general scanner.
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ._util import LocalProtocolError

__all__ = ["Address", "PathError", "parse_forward_path", "parse_reverse_path"]

# atext of RFC 5322 and RFC 5321's Atom.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
# UTF8-non-ascii of RFC 6531, less the C1 controls and the surrogates (no UTF-8
# decoder yields those, but a str built by hand may hold them).
_NON_ASCII = r"\u00a0-\ud7ff\ue000-\U0010ffff"
# Never allowed in a path, a local part or a domain: C0 controls (NUL, CR, LF
# among them), DEL, C1 controls, lone surrogates.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ASCII_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_FAST_PATH = re.compile(rf"<([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@({_LABEL}(?:\.{_LABEL})*)>(?: +|\Z)")

_DOT_STRING = re.compile(rf"[{_ATEXT}{_NON_ASCII}]+(?:\.[{_ATEXT}{_NON_ASCII}]+)*")
_QUOTED_STRING = re.compile(rf'"((?:[\x20\x21\x23-\x5b\x5d-\x7e{_NON_ASCII}]|\\[\x20-\x7e])*)"')
_QUOTED_PAIR = re.compile(r"\\([\x20-\x7e])")
# The characters a domain may be made of; the span is then checked label by label.
_DOMAIN_SPAN = re.compile(rf"[A-Za-z0-9.\-{_NON_ASCII}]+")

_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_HEX = re.compile(r"[0-9A-Fa-f]{1,4}")
_LDH_STR = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]")
_DCONTENT = re.compile(r"[\x21-\x5a\x5e-\x7e]+")

# 4.5.3.1: local part 64 octets, domain 255, path 256 (brackets included).
_MAX_LOCAL_PART = 64
_MAX_DOMAIN = 255
_MAX_PATH = 256


class PathError(ValueError):
    """A reverse or forward path that RFC 5321 section 4.1.2 does not allow.

    The message says what was expected and what came.
    """


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox as SMTP carries it (RFC 5321 4.1.2), or the bare ``Postmaster``.

    ``local_part`` is the meaning of the local part: ``"john doe"@example.com``
    is ``Address("john doe", "example.com")``. ``domain`` is a domain name (with
    U-labels allowed, RFC 6531) or an address literal kept with its brackets
    (``"[192.0.2.1]"``, ``"[IPv6:2001:db8::1]"``, ``"[tag:content]"``); it is
    ``None`` only for the special forward path ``<Postmaster>`` (4.1.1.3).
    Values are compared as written: no case folding of either part.
    """

    local_part: str
    domain: str | None

    def __post_init__(self) -> None:
        local_part = self.local_part
        domain = self.domain
        if not isinstance(local_part, str):
            raise LocalProtocolError(
                f"Address.local_part: expected str, got {type(local_part).__name__}"
            )
        bad = _FORBIDDEN.search(local_part)
        if bad is not None:
            raise LocalProtocolError(
                "Address.local_part: expected printable ASCII or non-ASCII characters, got "
                f"{bad.group()!r} at index {bad.start()} in {local_part!r}"
            )
        if domain is None:
            if not _is_postmaster(local_part):
                raise LocalProtocolError(
                    "Address.domain: expected a domain (only the local part 'Postmaster' may "
                    f"go without one), got None with local part {local_part!r}"
                )
            return
        if not isinstance(domain, str):
            raise LocalProtocolError(
                f"Address.domain: expected str or None, got {type(domain).__name__}"
            )
        bad = _FORBIDDEN.search(domain)
        if bad is not None:
            raise LocalProtocolError(
                f"Address.domain: expected no control characters, got {bad.group()!r} "
                f"at index {bad.start()} in {domain!r}"
            )
        problem = _domain_or_literal_problem(domain)
        if problem is not None:
            raise LocalProtocolError(f"Address.domain: {problem}")

    def __str__(self) -> str:
        local_part = self.local_part
        if _DOT_STRING.fullmatch(local_part) is None:
            local_part = _quote(local_part)
        if self.domain is None:
            return local_part
        return f"{local_part}@{self.domain}"

    @property
    def is_ascii(self) -> bool:
        """False when either part needs SMTPUTF8 (RFC 6531) to be sent."""
        return self.local_part.isascii() and (self.domain is None or self.domain.isascii())

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse a mailbox ``local@domain`` written without angle brackets.

        ``"Postmaster"`` alone (any case) gives the domain-less Postmaster
        address, so that ``Address.parse(str(a)) == a`` for every address.
        Raises LocalProtocolError saying what was expected and what came.
        """
        if not isinstance(text, str):
            raise LocalProtocolError(f"Address.parse: expected str, got {type(text).__name__}")
        if _is_postmaster(text):
            return _trusted_address(text, None)
        try:
            _refuse_forbidden(text)
            local_part, _, domain, end = _scan_mailbox(text, 0)
        except PathError as error:
            raise LocalProtocolError(f"Address.parse: {error}") from None
        if end != len(text):
            raise LocalProtocolError(
                f"Address.parse: expected the end of the mailbox after the domain {domain!r}, "
                f"got {text[end:]!r}"
            )
        return _trusted_address(local_part, domain)


def _trusted_address(local_part: str, domain: str | None) -> Address:
    """Build an Address from values the parser already checked."""
    address = object.__new__(Address)
    object.__setattr__(address, "local_part", local_part)
    object.__setattr__(address, "domain", domain)
    return address


def parse_reverse_path(text: str, *, strict: bool) -> tuple[Address | None, str]:
    """Parse what follows ``MAIL FROM:``: a path or the null path ``<>`` (None).

    Returns the address and the rest of the line (the parameters), with the
    spaces that separate it from the path removed. Raises PathError.
    """
    return _parse_path(text, strict, forward=False)


def parse_forward_path(text: str, *, strict: bool) -> tuple[Address, str]:
    """Parse what follows ``RCPT TO:``: a path or ``<Postmaster>`` (any case).

    Returns the address and the rest of the line (the parameters), with the
    spaces that separate it from the path removed. Raises PathError.
    """
    address, remainder = _parse_path(text, strict, forward=True)
    assert address is not None  # a forward path is never null
    return address, remainder


def _parse_path(text: str, strict: bool, forward: bool) -> tuple[Address | None, str]:
    if text[:1] == "<":
        match = _FAST_PATH.match(text)
        if match is not None:
            local_part, domain = match.group(1, 2)
            path_end = match.end(2) + 1
            if (
                path_end <= _MAX_PATH
                and (not strict or len(local_part) <= _MAX_LOCAL_PART)
                and len(domain) <= _MAX_DOMAIN
                and _FORBIDDEN.search(text, path_end) is None
            ):
                return _trusted_address(local_part, domain), text[match.end() :]
    # Anything else, and every refusal, takes the general road.
    return _parse_path_slowly(text, strict, forward)


def _parse_path_slowly(text: str, strict: bool, forward: bool) -> tuple[Address | None, str]:
    _refuse_forbidden(text)
    position = 0
    if not strict:
        # "MAIL FROM: <a@b>" is common enough that real servers accept it.
        position = len(text) - len(text.lstrip(" "))
    start = position
    bracketed = text.startswith("<", position)
    if bracketed:
        position += 1
    elif strict:
        raise PathError(f"expected '<' to open the path, got {_show(text, position)}")
    elif position == len(text):
        raise PathError("expected a path, got nothing")

    if bracketed and text.startswith(">", position):
        if forward:
            raise PathError("expected a forward path, got the null path '<>'")
        return None, _remainder(text, position + 1)

    # 4.1.1.3: "<Postmaster>" needs no domain, and only as a forward path.
    word_end = position + 10
    if _is_postmaster(text[position:word_end]) and (
        text.startswith(">", word_end) if bracketed else _ends_word(text, word_end)
    ):
        if not forward:
            raise PathError(
                f"expected a mailbox local@domain, got {text[position:word_end]!r} "
                "without a domain (valid only as a forward path)"
            )
        path_end = word_end + 1 if bracketed else word_end
        return _trusted_address(text[position:word_end], None), _remainder(text, path_end)

    if text.startswith("@", position):
        position = _skip_source_route(text, position)
    local_start = position
    local_part, local_end, domain, position = _scan_mailbox(text, position)

    if bracketed:
        if not text.startswith(">", position):
            raise PathError(
                f"expected '>' to close the path after the domain {domain!r}, "
                f"got {_show(text, position)}"
            )
        position += 1
        path_octets = _octets(text[start:position])
    else:
        path_octets = _octets(text[start:position]) + 2

    if strict:
        local_octets = _octets(text[local_start:local_end])
        if local_octets > _MAX_LOCAL_PART:
            raise PathError(
                f"expected a local part of at most {_MAX_LOCAL_PART} octets, "
                f"got {local_octets} octets"
            )
    if path_octets > _MAX_PATH:
        raise PathError(f"expected a path of at most {_MAX_PATH} octets, got {path_octets} octets")
    return _trusted_address(local_part, domain), _remainder(text, position)


def _scan_mailbox(text: str, position: int) -> tuple[str, int, str, int]:
    """Scan ``Local-part "@" (Domain / address-literal)`` from ``position``.

    Returns the local part's meaning, where its written form ends, the domain as
    written, and where the mailbox ends.
    """
    if text.startswith('"', position):
        match = _QUOTED_STRING.match(text, position)
        if match is None:
            raise PathError(_quoted_string_problem(text, position))
        local_part = match.group(1)
        if "\\" in local_part:
            local_part = _QUOTED_PAIR.sub(r"\1", local_part)
    else:
        match = _DOT_STRING.match(text, position)
        if match is None:
            raise PathError(
                "expected a local part (a dot-string or a quoted string), "
                f"got {_show(text, position)}"
            )
        local_part = match.group()
    local_end = match.end()
    if not text.startswith("@", local_end):
        raise PathError(
            f"expected '@' after the local part {text[position:local_end]!r}, "
            f"got {_show(text, local_end)}"
        )
    domain, end = _scan_domain(text, local_end + 1, literal_allowed=True)
    return local_part, local_end, domain, end


def _scan_domain(text: str, position: int, *, literal_allowed: bool) -> tuple[str, int]:
    if literal_allowed and text.startswith("[", position):
        close = text.find("]", position)
        if close < 0:
            raise PathError(
                f"expected ']' to close the address literal, got {_show(text, position)}"
            )
        domain = text[position : close + 1]
        problem = _literal_problem(domain)
    else:
        match = _DOMAIN_SPAN.match(text, position)
        if match is None:
            expected = "a domain or an address literal" if literal_allowed else "a domain"
            raise PathError(f"expected {expected} after '@', got {_show(text, position)}")
        domain = match.group()
        problem = _domain_problem(domain)
    if problem is not None:
        raise PathError(problem)
    return domain, position + len(domain)


def _skip_source_route(text: str, position: int) -> int:
    """Check ``A-d-l ":"`` from ``position`` (an "@") and return where it ends."""
    while True:
        # At-domain = "@" Domain: no address literals in a source route.
        domain, position = _scan_domain(text, position + 1, literal_allowed=False)
        if text.startswith(",", position):
            position += 1
            if not text.startswith("@", position):
                raise PathError(
                    f"expected '@' to start the next source route domain, "
                    f"got {_show(text, position)}"
                )
        elif text.startswith(":", position):
            return position + 1
        else:
            raise PathError(
                f"expected ',' or ':' after the source route domain {domain!r}, "
                f"got {_show(text, position)}"
            )


def _remainder(text: str, position: int) -> str:
    """The parameters after a path ending at ``position``, without the separating SP."""
    if position == len(text):
        return ""
    if text[position] != " ":
        raise PathError(
            f"expected SP or the end of the line after the path, got {text[position:]!r}"
        )
    return text[position:].lstrip(" ")


def _refuse_forbidden(text: str) -> None:
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        raise PathError(
            f"expected no control characters, got {bad.group()!r} at offset {bad.start()} "
            f"in {text!r}"
        )


def _quoted_string_problem(text: str, position: int) -> str:
    index = position + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            break  # not reached: a well-formed quoted string matched the regex
        if char == "\\":
            following = text[index + 1 : index + 2]
            if not following:
                break
            if not " " <= following <= "~":
                return (
                    "expected a printable ASCII character or SP after '\\' in the quoted "
                    f"local part, got {following!r}"
                )
            index += 2
        else:
            index += 1
    return f"expected a closing '\"' for the quoted local part, got {text[position:]!r}"


def _domain_or_literal_problem(domain: str) -> str | None:
    if domain.startswith("["):
        return _literal_problem(domain)
    return _domain_problem(domain)


def _domain_problem(domain: str) -> str | None:
    """Why ``domain`` is not an RFC 5321 Domain (U-labels allowed), or None."""
    if not domain:
        return "expected a domain, got ''"
    octets = _octets(domain)
    if octets > _MAX_DOMAIN:
        return f"expected a domain of at most {_MAX_DOMAIN} octets, got {octets} octets"
    if domain.isascii() and _ASCII_DOMAIN.fullmatch(domain) is not None:
        return None
    for label in domain.split("."):
        problem = _label_problem(label)
        if problem is not None:
            return f"{problem} in domain {domain!r}"
    return None


def _label_problem(label: str) -> str | None:
    if not label:
        return "expected dot-separated labels, got an empty label"
    is_ascii = label.isascii()
    for char in label:
        if char.isascii():
            if not (char.isalnum() or char == "-"):
                return f"expected letters, digits and '-' in label {label!r}, got {char!r}"
        elif unicodedata.category(char)[0] not in "LMN":
            # RFC 6531 U-labels: letters, marks and digits; no idna-codec rules.
            return f"expected letters, marks and digits in label {label!r}, got {char!r}"
    if label[0] == "-" or label[-1] == "-":
        return f"expected a label to start and end with a letter or digit, got {label!r}"
    if is_ascii:
        length = len(label)
    else:
        if unicodedata.category(label[0])[0] == "M":
            return f"expected a label to start with a letter or digit, got {label!r}"
        # The 63-octet limit is the DNS's, so it applies to the A-label (xn--...).
        length = 4 + len(label.encode("punycode"))
    if length > 63:
        return f"expected labels of at most 63 octets, got {length} octets in {label!r}"
    return None


def _literal_problem(literal: str) -> str | None:
    """Why ``literal`` is not an RFC 5321 4.1.3 address-literal, or None."""
    if len(literal) < 2 or literal[0] != "[" or literal[-1] != "]":
        return f"expected an address literal in brackets, got {literal!r}"
    if not literal.isascii():
        return f"expected an address literal of ASCII characters, got {literal!r}"
    if len(literal) > _MAX_DOMAIN:
        return f"expected an address literal of at most {_MAX_DOMAIN} octets, got {len(literal)}"
    inner = literal[1:-1]
    problem: str | None = None
    if _IPV4.fullmatch(inner) is not None:
        problem = _ipv4_problem(inner)
    else:
        tag, colon, content = inner.partition(":")
        if not colon:
            return (
                "expected an IPv4 address, 'IPv6:' and an IPv6 address, or 'tag:content' "
                f"in the address literal, got {literal!r}"
            )
        if tag.lower() == "ipv6":
            problem = _ipv6_problem(content)
        elif _LDH_STR.fullmatch(tag) is None:
            problem = "expected a tag of letters, digits and '-' ending in a letter or digit"
        elif _DCONTENT.fullmatch(content) is None:
            problem = "expected printable ASCII other than '[', '\\' and ']' after the tag"
    if problem is not None:
        return f"{problem}, got {literal!r}"
    return None


def _ipv4_problem(text: str) -> str | None:
    # Snum = 1*3DIGIT, 0 through 255; leading zeros are within the grammar.
    if _IPV4.fullmatch(text) is None:
        return "expected an IPv4 address of four decimal numbers"
    for snum in text.split("."):
        if int(snum) > 255:
            return "expected IPv4 numbers from 0 to 255"
    return None


def _ipv6_problem(text: str) -> str | None:
    """Check IPv6-addr exactly as RFC 5321 4.1.3 writes it.

    Stricter than ipaddress: "::" stands for at least two groups, and zone
    ids ("%eth0") are not part of the grammar.
    """
    if "%" in text:
        return "expected an IPv6 address without a zone id ('%')"
    if "." in text:
        # IPv6v4-full / IPv6v4-comp: the IPv4 tail counts as two groups.
        colon = text.rfind(":")
        if colon < 0 or _ipv4_problem(text[colon + 1 :]) is not None:
            return "expected an IPv6 address (its IPv4 tail of four numbers 0 to 255)"
        text = text[: colon + 1] + "0:0"
    halves = text.split("::")
    if len(halves) > 2:
        return "expected an IPv6 address with at most one '::'"
    if len(halves) == 2:
        groups = [group for half in halves if half for group in half.split(":")]
        if len(groups) > 6:
            return "expected an IPv6 address with at most 6 groups besides '::'"
    else:
        groups = text.split(":")
        if len(groups) != 8:
            return "expected an IPv6 address of 8 groups, or fewer with '::'"
    for group in groups:
        if _IPV6_HEX.fullmatch(group) is None:
            return "expected IPv6 groups of 1 to 4 hex digits"
    return None


def _quote(local_part: str) -> str:
    escaped = local_part.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _is_postmaster(text: str) -> bool:
    return len(text) == 10 and text.isascii() and text.lower() == "postmaster"


def _ends_word(text: str, position: int) -> bool:
    return position == len(text) or text[position] == " "


def _octets(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _show(text: str, position: int) -> str:
    if position >= len(text):
        return "the end of the text"
    rest = text[position:]
    return repr(rest if len(rest) <= 40 else rest[:40] + "...")

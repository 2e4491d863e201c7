"""Hypothesis strategies for addresses and MAIL/RCPT parameters.

Every strategy here draws only VALID values: ones a user may build and that
survive str() then parse unchanged. Sizes are kept inside RFC 5321 4.5.3.1 so
that a drawn address also makes a valid strict path ("<" + str(a) + ">").
"""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from smtp_core._address import Address
from smtp_core._parameters import (
    Body,
    DeliverBy,
    DeliverByMode,
    MailParams,
    Notify,
    OriginalRecipient,
    RcptParams,
    Ret,
    Rrvs,
    RrvsAction,
)

__all__ = ["addresses", "mail_params", "rcpt_params", "rfc3339_timestamps"]

_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
_PRINTABLE = "".join(chr(code) for code in range(32, 127))
_NON_ASCII = st.characters(categories=["Ll", "Lu", "Lo", "Nd"], min_codepoint=0xA0)

_ascii_atoms = st.text(_ATEXT, min_size=1, max_size=12)
_dot_string_local_parts = st.lists(_ascii_atoms, min_size=1, max_size=4).map(".".join)
# Quote, backslash and space weighted up so that quoted pairs are common.
_quoted_local_parts = st.text(
    st.one_of(st.sampled_from(['"', "\\", " ", "."]), st.sampled_from(_PRINTABLE)), max_size=30
)

_ascii_labels = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?\Z")
_long_labels = st.from_regex(r"\A[a-z0-9][a-z0-9-]{61}[a-z0-9]\Z")
_ascii_domains = st.lists(st.one_of(_ascii_labels, _long_labels), min_size=1, max_size=4).map(
    ".".join
)

_ipv4_literals = st.tuples(*[st.integers(0, 255)] * 4, st.sampled_from(["{}", "{:03d}"])).map(
    lambda drawn: "[" + ".".join(drawn[4].format(octet) for octet in drawn[:4]) + "]"
)


def _ipv6_text(value: int, form: str) -> str:
    address = ipaddress.IPv6Address(value)
    if form == "compressed":
        return address.compressed
    if form == "exploded":
        return address.exploded
    # IPv4-embedded forms: IPv6v4-full and IPv6v4-comp.
    groups = address.exploded.split(":")[:6]
    tail = str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if form == "v4-full":
        return ":".join(groups) + ":" + tail
    return "::ffff:" + tail


_ipv6_literals = st.tuples(
    st.one_of(st.integers(0, 2**128 - 1), st.sampled_from([0, 1, 2**32, 2**96, 2**128 - 1])),
    st.sampled_from(["compressed", "exploded", "v4-full", "v4-comp"]),
    st.sampled_from(["IPv6:", "ipv6:"]),
).map(lambda drawn: f"[{drawn[2]}{_ipv6_text(drawn[0], drawn[1])}]")

_general_literals = st.tuples(
    st.from_regex(r"\A[A-Za-z0-9-]{0,8}[A-Za-z0-9]\Z").filter(lambda tag: tag.lower() != "ipv6"),
    st.text(
        [chr(code) for code in range(33, 127) if chr(code) not in "[\\]"], min_size=1, max_size=20
    ),
).map(lambda drawn: f"[{drawn[0]}:{drawn[1]}]")


def _u_label_fits(label: str) -> bool:
    return 4 + len(label.encode("punycode")) <= 63


_utf8_labels = st.text(_NON_ASCII, min_size=1, max_size=10).filter(_u_label_fits)
_utf8_domains = st.lists(st.one_of(_utf8_labels, _ascii_labels), min_size=1, max_size=3).map(
    ".".join
)
_utf8_atoms = st.text(st.one_of(_NON_ASCII, st.sampled_from(_ATEXT)), min_size=1, max_size=10)
_utf8_local_parts = st.one_of(
    st.lists(_utf8_atoms, min_size=1, max_size=3).map(".".join),
    st.text(st.one_of(_NON_ASCII, st.sampled_from(_PRINTABLE)), max_size=15),
)


def _octets(text: str) -> int:
    return len(text.encode("utf-8"))


def _fits_in_a_path(address: Address) -> bool:
    # 4.5.3.1: local part as written <= 64 octets, domain <= 255, path <= 256.
    written = str(address)
    local_written = written.rpartition("@")[0]
    return (
        _octets(local_written) <= 64
        and _octets(address.domain or "") <= 255
        and _octets(written) + 2 <= 256
    )


def addresses(allow_utf8: bool = False) -> st.SearchStrategy[Address]:
    """Valid mailboxes (with a domain): dot-string and quoted local parts,
    domains and IPv4, IPv6 and general address literals; with ``allow_utf8``
    also non-ASCII local parts and U-label domains (RFC 6531)."""
    local_parts = st.one_of(_dot_string_local_parts, _quoted_local_parts)
    domains = st.one_of(_ascii_domains, _ipv4_literals, _ipv6_literals, _general_literals)
    if allow_utf8:
        local_parts = st.one_of(local_parts, _utf8_local_parts)
        domains = st.one_of(domains, _utf8_domains)
    return st.builds(Address, local_parts, domains).filter(_fits_in_a_path)


def _xtext_length(text: str) -> int:
    return sum(
        1 if "!" <= char <= "~" and char not in "+=" else 3 * len(char.encode("utf-8"))
        for char in text
    )


# Decoded xtext: any text without controls or surrogates, short enough for
# ENVID's 100 characters once encoded (RFC 3461 4.4).
_xtext_values = st.text(
    st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=30
).filter(lambda text: _xtext_length(text) <= 100)
_keywords = st.from_regex(r"\A[A-Z0-9][A-Z0-9-]{0,10}\Z")
_values = st.one_of(
    st.none(),
    st.text(
        st.one_of(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="="),
            st.characters(min_codepoint=0xA0, exclude_categories=["Cs"]),
        ),
        min_size=1,
        max_size=20,
    ),
)


def _extras(typed: frozenset[str]) -> st.SearchStrategy[tuple[tuple[str, str | None], ...]]:
    return st.lists(
        st.tuples(_keywords.filter(lambda keyword: keyword not in typed), _values),
        max_size=4,
        unique_by=lambda pair: pair[0],
    ).map(tuple)


# Keywords with a typed field, which ``extra`` may not hold.
_MAIL_KEYWORDS = frozenset(
    {"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH", "REQUIRETLS", "MT-PRIORITY", "BY"}
)
_RCPT_KEYWORDS = frozenset({"NOTIFY", "ORCPT", "RRVS"})

# RFC 4954 5: AUTH=<> or a mailbox, at most 500 characters as xtext.
_auth_values = st.one_of(
    st.just("<>"),
    addresses(allow_utf8=True).map(str).filter(lambda text: _xtext_length(text) <= 500),
)
# RFC 2852 4: by-time of 1 to 9 digits, above zero with mode R.
_deliver_bys = st.one_of(
    st.builds(
        DeliverBy,
        seconds=st.integers(-999_999_999, 999_999_999),
        mode=st.just(DeliverByMode.NOTIFY),
        trace=st.booleans(),
    ),
    st.builds(
        DeliverBy,
        seconds=st.integers(1, 999_999_999),
        mode=st.just(DeliverByMode.RETURN),
        trace=st.booleans(),
    ),
)


def mail_params(*, relay_extensions: bool = False) -> st.SearchStrategy[MailParams]:
    """Valid MAIL FROM parameters (RFC 1870, 6152, 3030, 6531, 3461).

    With ``relay_extensions`` also AUTH (RFC 4954), REQUIRETLS (RFC 8689),
    MT-PRIORITY (RFC 6710) and BY (RFC 2852), which a server accepts only
    when it advertises AUTH, REQUIRETLS, MT-PRIORITY and DELIVERBY.
    """
    if relay_extensions:
        auth = st.none() | _auth_values
        requiretls = st.booleans()
        mt_priority = st.none() | st.integers(-9, 9)
        deliver_by = st.none() | _deliver_bys
    else:
        auth, requiretls, mt_priority, deliver_by = st.none(), st.just(False), st.none(), st.none()
    return st.builds(
        MailParams,
        size=st.none() | st.integers(0, 10**20 - 1),
        body=st.none() | st.sampled_from(Body),
        smtputf8=st.booleans(),
        ret=st.none() | st.sampled_from(Ret),
        envid=st.none() | _xtext_values,
        auth=auth,
        requiretls=requiretls,
        mt_priority=mt_priority,
        deliver_by=deliver_by,
        extra=_extras(_MAIL_KEYWORDS),
    )


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


@st.composite
def rfc3339_timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 5.6 date-times: every field at its bounds now and then, leap
    seconds, fractions, numeric offsets, and "T" and "Z" in either case."""
    year = draw(st.integers(0, 9999))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, _days_in_month(year, month)))
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    second = draw(st.integers(0, 60))
    fraction = draw(st.sampled_from(["", ".0", ".5", ".123456789"]))
    offset = draw(
        st.one_of(
            st.sampled_from(["Z", "z"]),
            st.tuples(st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)).map(
                lambda drawn: f"{drawn[0]}{drawn[1]:02d}:{drawn[2]:02d}"
            ),
        )
    )
    separator = draw(st.sampled_from("Tt"))
    return (
        f"{year:04d}-{month:02d}-{day:02d}{separator}"
        f"{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"
    )


_rrvs_values = st.builds(
    Rrvs, timestamp=rfc3339_timestamps(), action=st.none() | st.sampled_from(RrvsAction)
)


_notifies = st.one_of(
    st.just((Notify.NEVER,)),
    st.permutations([Notify.SUCCESS, Notify.FAILURE, Notify.DELAY]).flatmap(
        lambda ordered: st.integers(1, 3).map(lambda count: tuple(ordered[:count]))
    ),
)
_original_recipients = st.builds(
    OriginalRecipient,
    addr_type=st.sampled_from(["rfc822", "RFC822", "utf-8", "x-local"]),
    address=_xtext_values,
)


def rcpt_params(*, relay_extensions: bool = False) -> st.SearchStrategy[RcptParams]:
    """Valid RCPT TO parameters (RFC 3461); extras may hold MAIL-only keywords.

    With ``relay_extensions`` also RRVS (RFC 7293), which a server accepts
    only when it advertises RRVS.
    """
    return st.builds(
        RcptParams,
        notify=st.none() | _notifies,
        orcpt=st.none() | _original_recipients,
        rrvs=(st.none() | _rrvs_values) if relay_extensions else st.none(),
        extra=_extras(_RCPT_KEYWORDS),
    )

"""Addresses and paths: smtp_core._address against RFC 5321 4.1.2, 4.1.3, 4.5.3.1
and RFC 6531."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import addresses

from smtp_core._address import (
    Address,
    PathError,
    _trusted_address,
    parse_forward_path,
    parse_reverse_path,
)
from smtp_core._util import LocalProtocolError

# -- round trips -------------------------------------------------------------


@given(addresses())
def test_address_str_then_parse_gives_the_same_address(address: Address) -> None:
    """RFC 5321 4.1.2: Mailbox = Local-part "@" ( Domain / address-literal )."""
    assert Address.parse(str(address)) == address


@given(addresses(allow_utf8=True))
def test_utf8_address_str_then_parse_gives_the_same_address(address: Address) -> None:
    """RFC 6531 3.3: atext, qtextSMTP and sub-domain extended with UTF8-non-ascii."""
    assert Address.parse(str(address)) == address


@given(addresses(allow_utf8=True), st.booleans())
def test_path_round_trip_as_forward_and_reverse_path(address: Address, strict: bool) -> None:
    """RFC 5321 4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">"."""
    path = "<" + str(address) + ">"
    assert parse_forward_path(path, strict=strict) == (address, "")
    assert parse_reverse_path(path, strict=strict) == (address, "")


@given(addresses(), st.sampled_from(["SIZE=10", "BODY=8BITMIME SMTPUTF8", "X"]))
def test_path_round_trip_keeps_the_parameters_as_remainder(address: Address, params: str) -> None:
    """RFC 5321 4.1.1.2: "MAIL FROM:" Reverse-path [SP Mail-parameters]."""
    assert parse_reverse_path(f"<{address}> {params}", strict=True) == (address, params)


@given(addresses(allow_utf8=True))
def test_is_ascii_is_false_exactly_when_a_part_has_non_ascii(address: Address) -> None:
    """RFC 6531 3.2: non-ASCII in a path requires SMTPUTF8."""
    assert address.is_ascii == str(address).isascii()


@given(addresses(allow_utf8=True))
def test_trusted_address_equals_a_validated_one(address: Address) -> None:
    """RFC 5321 4.1.2: the parser's fast constructor builds the same value."""
    assert _trusted_address(address.local_part, address.domain) == address


# -- local parts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "local_part"),
    [
        ('<"john doe"@example.com>', "john doe"),
        ('<"a\\"b"@example.com>', 'a"b'),
        ('<"a\\\\b"@example.com>', "a\\b"),
        ('<"Joe\\,Smith"@example.com>', "Joe,Smith"),
        ('<"\\ "@example.com>', " "),
        ('<""@example.com>', ""),
        ('<"a@b"@example.com>', "a@b"),
        ("<first.last+tag@example.com>", "first.last+tag"),
        ("<!#$%&'*+-/=?^_`{|}~@example.com>", "!#$%&'*+-/=?^_`{|}~"),
    ],
)
def test_local_part_is_stored_unquoted(path: str, local_part: str) -> None:
    """RFC 5321 4.1.2: Quoted-string with quoted-pairSMTP = "\\" %d32-126."""
    address, remainder = parse_forward_path(path, strict=True)
    assert address.local_part == local_part
    assert address.domain == "example.com"
    assert remainder == ""


@pytest.mark.parametrize(
    ("address", "written"),
    [
        (Address("john doe", "example.com"), '"john doe"@example.com'),
        (Address('a"b', "example.com"), '"a\\"b"@example.com'),
        (Address("a\\b", "example.com"), '"a\\\\b"@example.com'),
        (Address("", "example.com"), '""@example.com'),
        (Address(".a", "example.com"), '".a"@example.com'),
        (Address("a..b", "example.com"), '"a..b"@example.com'),
        (Address("a.b", "example.com"), "a.b@example.com"),
        (Address("用户", "例子.广告"), "用户@例子.广告"),
        (Address("Postmaster", None), "Postmaster"),
    ],
)
def test_str_writes_the_least_quoting(address: Address, written: str) -> None:
    """RFC 5321 4.1.2: the sending system SHOULD transmit the minimum quoting."""
    assert str(address) == written


def test_needlessly_quoted_local_part_equals_the_plain_one() -> None:
    """RFC 5321 4.1.2: all quoted forms MUST be treated as equivalent."""
    quoted, _ = parse_reverse_path('<"abc"@example.com>', strict=True)
    plain, _ = parse_reverse_path("<abc@example.com>", strict=True)
    assert quoted == plain == Address("abc", "example.com")
    assert str(quoted) == "abc@example.com"


@pytest.mark.parametrize(
    "path",
    [
        "<a..b@example.com>",
        "<.a@example.com>",
        "<a.@example.com>",
        "<a b@example.com>",
        "<a(b)@example.com>",
        '<"abc@example.com>',
        '<"a"b"@example.com>',
        '<"a\\é"@example.com>',
        "<@example.com>",
        "<example.com>",
    ],
)
def test_malformed_local_part_is_refused(path: str) -> None:
    """RFC 5321 4.1.2: Local-part = Dot-string / Quoted-string."""
    with pytest.raises(PathError):
        parse_reverse_path(path, strict=True)


def test_refusal_says_what_was_expected_and_what_came() -> None:
    """RFC 5321 4.1.2: a refusal names the rule, for the 501 reply text."""
    with pytest.raises(PathError, match=r"expected '@' after the local part 'a', got '\.\.b"):
        parse_reverse_path("<a..b@example.com>", strict=True)
    with pytest.raises(PathError, match=r"expected '>' to close the path .* got the end"):
        parse_reverse_path("<a@example.com", strict=True)


# -- domains -------------------------------------------------------------------


@pytest.mark.parametrize(
    "domain",
    [
        "example.com",
        "a",
        "123",
        "a-b.c-d",
        "xn--bcher-kva.example",
        "a" * 63 + ".com",
        "EXAMPLE.COM",
    ],
)
def test_valid_domains_are_kept_as_written(domain: str) -> None:
    """RFC 5321 4.1.2: Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]."""
    assert parse_forward_path(f"<a@{domain}>", strict=True) == (Address("a", domain), "")
    assert Address("a", domain).domain == domain


@pytest.mark.parametrize(
    "domain",
    [
        "-a.com",
        "a-.com",
        "a..com",
        ".a.com",
        "a.com.",
        "a_b.com",
        "a b.com",
        "a" * 64 + ".com",
        "exa\u00admple.com",  # soft hyphen: format character, not a letter
        "ex\u3002ample",  # ideographic full stop is not a label separator here
        "\u0301a.com",  # a label may not start with a combining mark
    ],
)
def test_invalid_domains_are_refused(domain: str) -> None:
    """RFC 5321 4.1.2: only letters, digits and hyphens in labels, 63 octets each."""
    with pytest.raises(PathError):
        parse_forward_path(f"<a@{domain}>", strict=True)
    with pytest.raises(LocalProtocolError):
        Address("a", domain)


def test_u_label_domain_is_accepted() -> None:
    """RFC 6531 3.3: sub-domain =/ U-label."""
    address, _ = parse_forward_path("<用户@例子.广告>", strict=True)
    assert address == Address("用户", "例子.广告")
    assert not address.is_ascii
    assert Address("a", "bücher.example").is_ascii is False
    assert Address("a", "example.com").is_ascii is True


def test_u_label_with_combining_marks_is_accepted() -> None:
    """RFC 6531 3.3: U-labels may hold combining marks (here Devanagari vowel signs)."""
    assert Address("a", "हिन्दी.example").domain == "हिन्दी.example"


def test_u_label_length_is_measured_as_its_a_label() -> None:
    """RFC 5321 4.5.3.1.2 with RFC 5890: a label is at most 63 octets in the DNS."""
    Address("a", "ü" * 50)  # xn--tdaaaa...: 4 + 56 octets
    with pytest.raises(LocalProtocolError, match="63 octets"):
        Address("a", "ü" * 60)


# -- address literals ------------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    [
        "[192.0.2.1]",
        "[0.0.0.0]",
        "[255.255.255.255]",
        "[001.002.003.004]",
        "[IPv6:2001:db8::1]",
        "[IPv6:::]",
        "[IPv6:::1]",
        "[IPv6:1::]",
        "[ipv6:2001:DB8:0:0:0:0:0:1]",
        "[IPv6:1:2:3:4:5:6::]",
        "[IPv6:::ffff:192.0.2.1]",
        "[IPv6:0:0:0:0:0:ffff:192.0.2.1]",
        "[IPv6:1:2:3:4::192.0.2.1]",
        "[IPv6:::192.0.2.1]",
        "[x-tag:anything!~goes]",
        "[tag:a:b:c]",
    ],
)
def test_valid_address_literals(literal: str) -> None:
    """RFC 5321 4.1.3: IPv4, IPv6 and General-address-literal."""
    assert parse_forward_path(f"<a@{literal}>", strict=True) == (Address("a", literal), "")
    assert Address("a", literal).domain == literal


@pytest.mark.parametrize(
    "literal",
    [
        "[256.0.0.1]",
        "[1.2.3]",
        "[1.2.3.4.5]",
        "[1234.1.1.1]",
        "[]",
        "[example.com]",
        "[IPv6:1:2:3:4:5:6:7]",
        "[IPv6:1:2:3:4:5:6:7:8:9]",
        "[IPv6:1:2:3:4:5:6:7::]",  # '::' must stand for at least two groups
        "[IPv6:1::2::3]",
        "[IPv6:12345::]",
        "[IPv6:fe80::1%eth0]",
        "[IPv6:::ffff:256.0.2.1]",
        "[IPv6:1:2:3:4:5::192.0.2.1]",
        "[IPv6:192.0.2.1]",
        "[IPv6:]",
        "[::1]",
        "[tag:]",
        "[tag-:x]",
        "[ta_g:x]",
        "[tag:a b]",
        "[tag:a\\b]",
        "[tag:ü]",
    ],
)
def test_invalid_address_literals(literal: str) -> None:
    """RFC 5321 4.1.3: Snum 0-255, IPv6-addr exactly, Standardized-tag ":" 1*dcontent."""
    with pytest.raises(PathError):
        parse_forward_path(f"<a@{literal}>", strict=True)
    with pytest.raises(LocalProtocolError):
        Address("a", literal)


def test_ipv6_zone_id_refusal_names_it() -> None:
    """RFC 5321 4.1.3: IPv6-addr has no zone id."""
    with pytest.raises(PathError, match="zone id"):
        parse_forward_path("<a@[IPv6:fe80::1%25eth0]>", strict=True)


# -- source routes, Postmaster, null path ---------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "<@relay.example:user@example.com>",
        "<@one.example,@two.example:user@example.com>",
        "<@a,@b,@c:user@example.com>",
    ],
)
def test_source_route_is_accepted_and_dropped(path: str) -> None:
    """RFC 5321 4.1.2 and Appendix C: A-d-l MUST be accepted and SHOULD be ignored."""
    expected = (Address("user", "example.com"), "SIZE=1")
    assert parse_forward_path(path + " SIZE=1", strict=True) == expected
    assert parse_reverse_path(path + " SIZE=1", strict=True) == expected


@pytest.mark.parametrize(
    "path",
    [
        "<@relay.example user@example.com>",
        "<@relay.example,user@example.com>",
        "<@relay.example,:user@example.com>",
        "<@[192.0.2.1]:user@example.com>",
        "<@-bad:user@example.com>",
        "<@:user@example.com>",
    ],
)
def test_malformed_source_route_is_refused(path: str) -> None:
    """RFC 5321 4.1.2: A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain."""
    with pytest.raises(PathError):
        parse_forward_path(path, strict=True)


@pytest.mark.parametrize("written", ["Postmaster", "postmaster", "POSTMASTER", "PostMaster"])
def test_postmaster_without_domain_is_a_forward_path(written: str) -> None:
    """RFC 5321 4.1.1.3: "<Postmaster>" (case-insensitive) is a valid forward path."""
    address, remainder = parse_forward_path(f"<{written}> NOTIFY=NEVER", strict=True)
    assert address == Address(written, None)
    assert address.domain is None
    assert remainder == "NOTIFY=NEVER"
    assert str(address) == written
    assert Address.parse(written) == address


def test_postmaster_without_domain_is_not_a_reverse_path() -> None:
    """RFC 5321 4.1.1.2: Reverse-path = Path / "<>"; Path always has a Mailbox."""
    with pytest.raises(PathError, match="only as a forward path"):
        parse_reverse_path("<Postmaster>", strict=True)


def test_postmaster_with_domain_is_an_ordinary_mailbox() -> None:
    """RFC 5321 4.1.1.3: "<Postmaster@" Domain ">"."""
    assert parse_reverse_path("<Postmaster@example.com>", strict=True) == (
        Address("Postmaster", "example.com"),
        "",
    )


def test_only_postmaster_may_go_without_a_domain() -> None:
    """RFC 5321 4.1.1.3: Address(..., None) is only the special <Postmaster>."""
    with pytest.raises(LocalProtocolError, match="Postmaster"):
        Address("root", None)
    with pytest.raises(PathError):
        parse_forward_path("<root>", strict=True)
    with pytest.raises(PathError):
        parse_forward_path("<Postmasters>", strict=True)


def test_null_reverse_path_is_none() -> None:
    """RFC 5321 4.1.1.2: Reverse-path = Path / "<>"."""
    assert parse_reverse_path("<>", strict=True) == (None, "")
    assert parse_reverse_path("<> SIZE=0", strict=True) == (None, "SIZE=0")


def test_null_path_is_refused_as_forward_path() -> None:
    """RFC 5321 4.1.1.3: Forward-path = Path, never "<>"."""
    with pytest.raises(PathError, match="null path"):
        parse_forward_path("<>", strict=True)
    with pytest.raises(PathError):
        parse_forward_path(" <>", strict=False)


# -- control characters ---------------------------------------------------------


@pytest.mark.parametrize("control", ["\x00", "\r", "\n", "\t", "\x1b", "\x7f", "\x85"])
@pytest.mark.parametrize("template", ["<a{}b@example.com>", "<a@exam{}ple.com>", '<"a{}b"@c.d>'])
def test_control_characters_are_refused_in_paths(control: str, template: str) -> None:
    """RFC 5321 4.1.2: control characters MUST NOT be used in MAIL or RCPT."""
    for strict in (True, False):
        with pytest.raises(PathError, match="control"):
            parse_reverse_path(template.format(control), strict=strict)
        with pytest.raises(PathError, match="control"):
            parse_forward_path(template.format(control), strict=strict)


@pytest.mark.parametrize("control", ["\x00", "\r", "\n", "\r\nRCPT TO:<x@y>"])
def test_control_characters_after_the_path_are_refused(control: str) -> None:
    """RFC 5321 4.1.2: no CR or LF smuggled into the parameters of a command line."""
    with pytest.raises(PathError):
        parse_reverse_path(f"<a@example.com> SIZE=1{control}", strict=True)
    with pytest.raises(PathError):
        parse_reverse_path(f"<a@example.com>{control}", strict=True)


@pytest.mark.parametrize("control", ["\x00", "\r", "\n", "\x7f", "\x9f", "\ud800"])
def test_control_characters_are_refused_in_built_addresses(control: str) -> None:
    """RFC 5321 4.1.2 and RFC 6531 3.3: neither part may hold a control character."""
    with pytest.raises(LocalProtocolError, match="local_part"):
        Address(f"a{control}b", "example.com")
    with pytest.raises(LocalProtocolError, match="domain"):
        Address("a", f"exam{control}ple.com")
    with pytest.raises(LocalProtocolError):
        Address.parse(f"a{control}b@example.com")


def test_bad_types_are_refused() -> None:
    """RFC 5321 4.1.2: an Address holds text."""
    with pytest.raises(LocalProtocolError, match="local_part: expected str"):
        Address(b"a", "example.com")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="domain: expected str or None"):
        Address("a", 1)  # type: ignore[arg-type]


# -- lengths ---------------------------------------------------------------------


def test_local_part_limit_applies_only_when_strict() -> None:
    """RFC 5321 4.5.3.1.1: a local part is at most 64 octets."""
    fits = "a" * 64
    too_long = "a" * 65
    assert parse_reverse_path(f"<{fits}@example.com>", strict=True)[0] == Address(
        fits, "example.com"
    )
    with pytest.raises(PathError, match="64 octets"):
        parse_reverse_path(f"<{too_long}@example.com>", strict=True)
    assert parse_reverse_path(f"<{too_long}@example.com>", strict=False)[0] == Address(
        too_long, "example.com"
    )


def test_local_part_limit_counts_octets_and_quotes() -> None:
    """RFC 5321 4.5.3.1.1 and RFC 6531 3.3: lengths are in octets as written."""
    with pytest.raises(PathError, match="66 octets"):
        parse_reverse_path("<" + "é" * 33 + "@example.com>", strict=True)
    with pytest.raises(PathError, match="65 octets"):
        parse_reverse_path('<"' + "a" * 63 + '"@example.com>', strict=True)


def test_domain_limit_is_255_octets() -> None:
    """RFC 5321 4.5.3.1.2: a domain is at most 255 octets."""
    domain = ".".join(["a" * 63] * 4)  # 255 octets
    assert len(domain) == 255
    assert Address("a", domain).domain == domain
    with pytest.raises(LocalProtocolError, match="255 octets"):
        Address("a", domain + "a")
    with pytest.raises(PathError, match="255 octets"):
        parse_reverse_path(f"<a@{domain}a>", strict=False)


def test_path_limit_is_256_octets_even_when_lenient() -> None:
    """RFC 5321 4.5.3.1.3: a path is at most 256 octets including punctuation."""
    domain = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 60])  # 252 octets
    fits = f"<x@{domain}>"  # 256 octets
    assert len(fits) == 256
    assert parse_forward_path(fits, strict=True)[0] == Address("x", domain)
    for strict in (True, False):
        with pytest.raises(PathError, match="256 octets"):
            parse_forward_path(f"<xy@{domain}>", strict=strict)
    with pytest.raises(PathError, match="256 octets"):
        parse_forward_path(f"xy@{domain}", strict=False)


def test_source_route_counts_towards_the_path_limit() -> None:
    """RFC 5321 4.5.3.1.3: punctuation and element separators count."""
    route = ",".join(["@" + "r" * 60] * 4)
    with pytest.raises(PathError, match="octets"):
        parse_forward_path(f"<{route}:a@example.com>", strict=True)


# -- strict and lenient forms ------------------------------------------------------


def test_space_before_the_path_only_when_lenient() -> None:
    """RFC 5321 4.1.1.2: "MAIL FROM:" Reverse-path, no space; real clients send one."""
    assert parse_reverse_path("  <a@example.com>", strict=False) == (
        Address("a", "example.com"),
        "",
    )
    with pytest.raises(PathError, match="expected '<'"):
        parse_reverse_path(" <a@example.com>", strict=True)


def test_path_without_brackets_only_when_lenient() -> None:
    """RFC 5321 4.1.2: Path = "<" ... ">"; leniency for old clients."""
    assert parse_reverse_path("a@example.com SIZE=5", strict=False) == (
        Address("a", "example.com"),
        "SIZE=5",
    )
    assert parse_forward_path(" a@example.com", strict=False) == (
        Address("a", "example.com"),
        "",
    )
    assert parse_forward_path("postmaster", strict=False) == (Address("postmaster", None), "")
    with pytest.raises(PathError, match="expected '<'"):
        parse_reverse_path("a@example.com", strict=True)


@pytest.mark.parametrize("text", ["", "   ", "a@example.com>", "a@b@c"])
def test_lenient_form_still_needs_a_mailbox(text: str) -> None:
    """RFC 5321 4.1.2: even without brackets the path is a Mailbox."""
    with pytest.raises(PathError):
        parse_reverse_path(text, strict=False)


@pytest.mark.parametrize(
    "text",
    [
        "<a@example.com",
        "<a@example.com>>",
        "<<a@example.com>",
        "< a@example.com>",
        "<a@example.com >",
    ],
)
def test_brackets_must_enclose_exactly_the_mailbox(text: str) -> None:
    """RFC 5321 4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">"."""
    for strict in (True, False):
        with pytest.raises(PathError):
            parse_reverse_path(text, strict=strict)


# -- the remainder ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "remainder"),
    [
        ("<a@example.com>", ""),
        ("<a@example.com> ", ""),
        ("<a@example.com> SIZE=10", "SIZE=10"),
        ("<a@example.com>    SIZE=10 BODY=8BITMIME", "SIZE=10 BODY=8BITMIME"),
        ("<a@example.com> SIZE=10  ", "SIZE=10  "),
        ('<"a b"@[192.0.2.1]> X=y', "X=y"),
        ("<a@example.com> <b@example.com>", "<b@example.com>"),
    ],
)
def test_remainder_is_the_parameters_without_separating_spaces(text: str, remainder: str) -> None:
    """RFC 5321 4.1.1.2: Reverse-path [SP Mail-parameters]."""
    assert parse_reverse_path(text, strict=True)[1] == remainder
    assert parse_forward_path(text, strict=True)[1] == remainder


@pytest.mark.parametrize("text", ["<a@example.com>x", "<a@example.com>SIZE=1", "<>x", '<"a"@b>,'])
def test_something_glued_to_the_path_is_refused(text: str) -> None:
    """RFC 5321 4.1.1.2: parameters are separated from the path by SP."""
    with pytest.raises(PathError, match="expected SP or the end of the line"):
        parse_reverse_path(text, strict=True)


# -- Address.parse and validation -------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["<a@example.com>", "a@example.com ", "a", "a@", "@example.com", "a@b@c", ""]
)
def test_address_parse_refuses_anything_but_a_mailbox(text: str) -> None:
    """RFC 5321 4.1.2: Mailbox = Local-part "@" ( Domain / address-literal )."""
    with pytest.raises(LocalProtocolError, match=r"Address\.parse: expected"):
        Address.parse(text)


def test_address_is_frozen_and_hashable() -> None:
    """RFC 5321 4.1.2: addresses are values."""
    address = Address("a", "example.com")
    with pytest.raises(AttributeError):
        address.local_part = "b"  # type: ignore[misc]
    assert {address, Address("a", "example.com")} == {address}


@given(st.text(max_size=40))
def test_arbitrary_text_raises_only_path_error(text: str) -> None:
    """RFC 5321 4.1.2: any input gives an address or a PathError, nothing else."""
    for strict in (True, False):
        for parse in (parse_reverse_path, parse_forward_path):
            try:
                address, remainder = parse(text, strict=strict)
            except PathError:
                continue
            if address is not None:
                # Whatever the parser returns is a value a user could build.
                assert Address(address.local_part, address.domain) == address
            assert remainder == "" or remainder[0] != " "


@given(st.text(alphabet='<>@"\\.:,[] aZ9-é', max_size=30))
def test_grammar_like_text_gives_valid_addresses_or_path_error(text: str) -> None:
    """RFC 5321 4.1.2: the scanner and the validator agree on every input."""
    for strict in (True, False):
        try:
            address, _ = parse_forward_path(text, strict=strict)
        except PathError:
            continue
        assert Address(address.local_part, address.domain) == address
        assert parse_forward_path(f"<{address}>", strict=False)[0] == address

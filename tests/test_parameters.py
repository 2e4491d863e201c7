"""MAIL and RCPT parameters: smtp_core._parameters against RFC 5321 4.1.2,
RFC 1870, RFC 6152, RFC 3030, RFC 6531, RFC 3461, RFC 4954, RFC 8689,
RFC 6710, RFC 2852 and RFC 7293."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import mail_params, rcpt_params, rfc3339_timestamps

from smtp_core._parameters import (
    Body,
    DeliverBy,
    DeliverByMode,
    MailParams,
    Notify,
    OriginalRecipient,
    ParameterError,
    RcptParams,
    Ret,
    Rrvs,
    RrvsAction,
    parse_mail_params,
    parse_rcpt_params,
    xtext_decode,
    xtext_encode,
)
from smtp_core._util import LocalProtocolError

# -- round trips ------------------------------------------------------------------


@given(mail_params(relay_extensions=True))
def test_mail_params_str_then_parse_gives_the_same_value(params: MailParams) -> None:
    """RFC 5321 4.1.2: Mail-parameters = esmtp-param *(SP esmtp-param)."""
    assert parse_mail_params(str(params)) == params


@given(rcpt_params(relay_extensions=True))
def test_rcpt_params_str_then_parse_gives_the_same_value(params: RcptParams) -> None:
    """RFC 5321 4.1.2: Rcpt-parameters = esmtp-param *(SP esmtp-param)."""
    assert parse_rcpt_params(str(params)) == params


@given(mail_params(relay_extensions=True))
def test_mail_keywords_match_the_wire_form(params: MailParams) -> None:
    """RFC 5321 4.1.2: esmtp-keyword, one per esmtp-param."""
    wire = [word.partition("=")[0] for word in str(params).split(" ") if word]
    assert params.keywords() == tuple(wire)


@given(rcpt_params(relay_extensions=True))
def test_rcpt_keywords_match_the_wire_form(params: RcptParams) -> None:
    """RFC 5321 4.1.2: esmtp-keyword, one per esmtp-param."""
    wire = [word.partition("=")[0] for word in str(params).split(" ") if word]
    assert params.keywords() == tuple(wire)


# -- MAIL parameters --------------------------------------------------------------------


def test_empty_text_gives_empty_params() -> None:
    """RFC 5321 4.1.1.2: Mail-parameters are optional."""
    assert parse_mail_params("") == MailParams()
    assert parse_mail_params("   ") == MailParams()
    assert parse_rcpt_params("") == RcptParams()
    assert str(MailParams()) == ""
    assert str(RcptParams()) == ""
    assert MailParams().keywords() == ()


def test_all_typed_mail_parameters_are_parsed() -> None:
    """RFC 1870 6, RFC 6152 2, RFC 6531 3.4, RFC 3461 4.3 and 4.4, RFC 4954 5,
    RFC 8689 4.1, RFC 6710 3 and RFC 2852 4."""
    wire = (
        "SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B314 AUTH=<> REQUIRETLS "
        "MT-PRIORITY=3 BY=60;R X-A=1"
    )
    params = parse_mail_params(wire)
    assert params == MailParams(
        size=1000,
        body=Body.EIGHT_BIT_MIME,
        smtputf8=True,
        ret=Ret.HDRS,
        envid="QQ+314",
        auth="<>",
        requiretls=True,
        mt_priority=3,
        deliver_by=DeliverBy(60, DeliverByMode.RETURN),
        extra=(("X-A", "1"),),
    )
    assert str(params) == wire
    assert params.keywords() == (
        "SIZE",
        "BODY",
        "SMTPUTF8",
        "RET",
        "ENVID",
        "AUTH",
        "REQUIRETLS",
        "MT-PRIORITY",
        "BY",
        "X-A",
    )


def test_keywords_and_enumerated_values_are_case_insensitive() -> None:
    """RFC 5321 2.4: verbs and extension keywords are not case sensitive."""
    params = parse_mail_params("size=5 Body=binarymime smtputf8 ret=full x-Foo=Bar")
    assert params == MailParams(
        size=5,
        body=Body.BINARY_MIME,
        smtputf8=True,
        ret=Ret.FULL,
        extra=(("X-FOO", "Bar"),),
    )


def test_body_7bit() -> None:
    """RFC 6152 2: BODY=7BIT."""
    assert parse_mail_params("BODY=7bit").body is Body.SEVEN_BIT


def test_size_keeps_its_numeric_value() -> None:
    """RFC 1870 6: size-value ::= 1*20DIGIT."""
    assert parse_mail_params("SIZE=0").size == 0
    assert parse_mail_params("SIZE=007").size == 7
    assert parse_mail_params("SIZE=" + "9" * 20).size == 10**20 - 1


def test_multiple_spaces_between_parameters_are_tolerated() -> None:
    """RFC 5321 4.1.2: esmtp-param *(SP esmtp-param); extra spaces are harmless."""
    assert parse_mail_params("  SIZE=1   BODY=7BIT  ") == MailParams(size=1, body=Body.SEVEN_BIT)


def test_unknown_keywords_are_kept_in_order() -> None:
    """RFC 5321 4.1.2: other esmtp-params belong to extensions the caller judges."""
    params = parse_mail_params("ZETA=1 XVERP ALPHA=z HOLDFOR=60")
    assert params.extra == (("ZETA", "1"), ("XVERP", None), ("ALPHA", "z"), ("HOLDFOR", "60"))
    assert str(params) == "ZETA=1 XVERP ALPHA=z HOLDFOR=60"


def test_rcpt_keywords_on_mail_are_extra() -> None:
    """RFC 3461 4.1: NOTIFY belongs to RCPT; on MAIL the caller decides."""
    assert parse_mail_params("NOTIFY=NEVER").extra == (("NOTIFY", "NEVER"),)


def test_utf8_in_extra_values_is_allowed() -> None:
    """RFC 6531 3.3: esmtp-value =/ UTF8-non-ascii."""
    assert parse_mail_params("X-NAME=José").extra == (("X-NAME", "José"),)


def _refused(parse: object, text: str) -> ParameterError:
    assert callable(parse)
    with pytest.raises(ParameterError) as caught:
        parse(text)
    error = caught.value
    assert (error.code, error.enhanced) == (501, "5.5.4")
    assert str(error) == error.message
    return error


@pytest.mark.parametrize(
    "text",
    [
        "=1",
        "-SIZE=1",
        "SI_ZE=1",
        "SIZE=",
        "X=a=b",
        "X=\x01",
        "X=a\tb",
        "X\t",
        "É=1",
        "X=\x85",
    ],
)
def test_syntax_errors_are_refused(text: str) -> None:
    """RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"),
    esmtp-value = 1*(%d33-60 / %d62-126)."""
    _refused(parse_mail_params, text)
    _refused(parse_rcpt_params, text)


@pytest.mark.parametrize(
    "text", ["SIZE=1 SIZE=2", "size=1 SIZE=2", "SMTPUTF8 smtputf8", "X-A=1 x-a", "ZZ ZZ=1"]
)
def test_duplicate_keywords_are_refused_case_insensitively(text: str) -> None:
    """RFC 5321 4.1.2 with RFC 1870 6, RFC 3461 4: a parameter appears at most once."""
    error = _refused(parse_mail_params, text)
    assert "duplicate parameter" in error.message
    assert text.split(" ")[0].partition("=")[0].upper() in error.message


def test_duplicate_rcpt_keywords_are_refused() -> None:
    """RFC 3461 4.1 and 4.2: NOTIFY and ORCPT appear at most once."""
    assert "NOTIFY" in _refused(parse_rcpt_params, "NOTIFY=NEVER notify=NEVER").message
    _refused(parse_rcpt_params, "ORCPT=rfc822;a@b ORCPT=rfc822;c@d")


@pytest.mark.parametrize(
    "text",
    [
        "SIZE",
        "SIZE=-1",
        "SIZE=1.5",
        "SIZE=" + "1" * 21,
        "SIZE=١٢",  # Arabic-Indic digits are not DIGIT
        "SIZE=abc",
    ],
)
def test_bad_size_is_refused(text: str) -> None:
    """RFC 1870 6: size-value ::= 1*20DIGIT."""
    assert "SIZE" in _refused(parse_mail_params, text).message


@pytest.mark.parametrize("text", ["BODY", "BODY=8BIT", "BODY=BINARY", "BODY=7BITS"])
def test_bad_body_is_refused(text: str) -> None:
    """RFC 6152 2 and RFC 3030 3: BODY=7BIT / 8BITMIME / BINARYMIME."""
    assert "BODY" in _refused(parse_mail_params, text).message


def test_smtputf8_with_a_value_is_refused() -> None:
    """RFC 6531 3.4: the SMTPUTF8 parameter takes no value."""
    assert "SMTPUTF8" in _refused(parse_mail_params, "SMTPUTF8=YES").message


@pytest.mark.parametrize("text", ["RET", "RET=HEADERS", "RET=FULL,HDRS", "RET=\u017fULL"])
def test_bad_ret_is_refused(text: str) -> None:
    """RFC 3461 4.3: ret-value = "FULL" / "HDRS"."""
    assert "RET" in _refused(parse_mail_params, text).message


@pytest.mark.parametrize(
    "text",
    ["ENVID", "ENVID=a+2", "ENVID=a+2b", "ENVID=a+ZZ", "ENVID=a+", "ENVID=é", "ENVID=a+0D"],
)
def test_bad_envid_is_refused(text: str) -> None:
    """RFC 3461 4.4: envid-value = xtext."""
    assert "ENVID" in _refused(parse_mail_params, text).message


def test_envid_length_limit_is_100_characters() -> None:
    """RFC 3461 4.4: the ENVID parameter may be up to 100 characters."""
    assert parse_mail_params("ENVID=" + "a" * 100).envid == "a" * 100
    assert "100" in _refused(parse_mail_params, "ENVID=" + "a" * 101).message
    with pytest.raises(LocalProtocolError, match="envid"):
        MailParams(envid="a" * 101)
    with pytest.raises(LocalProtocolError, match="envid"):
        MailParams(envid="+" * 34)  # 102 characters once encoded


# -- RCPT parameters ---------------------------------------------------------------


def test_all_typed_rcpt_parameters_are_parsed() -> None:
    """RFC 3461 4.1 and 4.2: NOTIFY and ORCPT."""
    params = parse_rcpt_params("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.com X=1")
    assert params == RcptParams(
        notify=(Notify.SUCCESS, Notify.FAILURE),
        orcpt=OriginalRecipient("rfc822", "a+b@example.com"),
        extra=(("X", "1"),),
    )
    assert str(params) == "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.com X=1"
    assert params.keywords() == ("NOTIFY", "ORCPT", "X")


def test_notify_keeps_the_order_given_and_ignores_case() -> None:
    """RFC 3461 4.1: notify-list-element, in any order."""
    assert parse_rcpt_params("notify=delay,Success").notify == (Notify.DELAY, Notify.SUCCESS)
    assert parse_rcpt_params("NOTIFY=never").notify == (Notify.NEVER,)


@pytest.mark.parametrize(
    "value",
    [
        "",
        ",",
        "SUCCESS,",
        ",SUCCESS",
        "SUCCESS,,FAILURE",
        "NEVER,SUCCESS",
        "FAILURE,NEVER",
        "SUCCESS,SUCCESS",
        "success,SUCCESS",
        "ALWAYS",
        "SUCCESS;FAILURE",
    ],
)
def test_bad_notify_is_refused(value: str) -> None:
    """RFC 3461 4.1: "NEVER" / 1#notify-list-element, NEVER never combined."""
    _refused(parse_rcpt_params, f"NOTIFY={value}" if value else "NOTIFY")


def test_orcpt_keeps_addr_type_case_and_decodes_the_address() -> None:
    """RFC 3461 4.2: orcpt-parameter = "ORCPT=" original-recipient-address."""
    params = parse_rcpt_params("ORCPT=RFC822;J+20Doe@example.com")
    assert params.orcpt == OriginalRecipient("RFC822", "J Doe@example.com")
    assert str(params) == "ORCPT=RFC822;J+20Doe@example.com"
    assert parse_rcpt_params("ORCPT=rfc822;").orcpt == OriginalRecipient("rfc822", "")


@pytest.mark.parametrize(
    "text",
    [
        "ORCPT",
        "ORCPT=rfc822",
        "ORCPT=;a@b",
        "ORCPT=rfc(822);a@b",
        "ORCPT=rfc822;a+2",
        "ORCPT=rfc822;a;b+3Bc+0A",
        "ORCPT=rfc822;a+00",
    ],
)
def test_bad_orcpt_is_refused(text: str) -> None:
    """RFC 3461 4.2: original-recipient-address = addr-type ";" xtext."""
    assert "ORCPT" in _refused(parse_rcpt_params, text).message


def test_orcpt_length_limit_is_500_characters() -> None:
    """RFC 3461 4.2: the ORCPT parameter may be up to 500 characters."""
    fits = "rfc822;" + "a" * 493
    assert parse_rcpt_params("ORCPT=" + fits).orcpt == OriginalRecipient("rfc822", "a" * 493)
    assert "500" in _refused(parse_rcpt_params, "ORCPT=" + fits + "a").message
    with pytest.raises(LocalProtocolError, match="500"):
        OriginalRecipient("rfc822", "a" * 494)


def test_mail_keywords_on_rcpt_are_extra() -> None:
    """RFC 1870 6: SIZE belongs to MAIL; on RCPT the caller decides."""
    assert parse_rcpt_params("SIZE=10 BODY=x").extra == (("SIZE", "10"), ("BODY", "x"))


# -- AUTH (RFC 4954) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "decoded"),
    [
        ("<>", "<>"),
        ("user@example.com", "user@example.com"),
        ("e+3Dmc2@example.com", "e=mc2@example.com"),
        ("a+2Bb@example.com", "a+b@example.com"),
        ('"j+20doe"@example.com', '"j doe"@example.com'),
        ("jos+C3+A9@example.com", "josé@example.com"),
        ("user@[192.0.2.1]", "user@[192.0.2.1]"),
    ],
)
def test_auth_is_stored_decoded(wire: str, decoded: str) -> None:
    """RFC 4954 5: auth-param = "AUTH=" xtext, whose value is an addr-spec or "<>"."""
    params = parse_mail_params(f"AUTH={wire}")
    assert params.auth == decoded
    assert params == MailParams(auth=decoded)
    assert parse_mail_params(str(params)) == params


def test_auth_is_written_as_xtext() -> None:
    """RFC 4954 5: the AUTH= value is sent xtext-encoded (RFC 3461 4)."""
    assert str(MailParams(auth="<>")) == "AUTH=<>"
    assert str(MailParams(auth="e=mc2@example.com")) == "AUTH=e+3Dmc2@example.com"
    assert str(MailParams(auth='"j doe"@example.com')) == 'AUTH="j+20doe"@example.com'


@pytest.mark.parametrize(
    "text",
    [
        "AUTH",
        "AUTH=user",
        "AUTH=postmaster",
        "AUTH=<user@example.com>",
        "AUTH=+3C+3E+3C+3E",
        "AUTH=@example.com",
        "AUTH=user@",
        "AUTH=user@-example.com",
        "AUTH=a+2b@example.com",
        "AUTH=a+0D+0A@example.com",
        "AUTH=us+20er@example.com",
        "AUTH=josé@example.com",
    ],
)
def test_bad_auth_is_refused(text: str) -> None:
    """RFC 4954 5: the value is xtext and decodes to "<>" or an addr-spec."""
    assert "AUTH" in _refused(parse_mail_params, text).message


def test_auth_length_limit_is_500_characters() -> None:
    """RFC 4954 3 and 5: AUTH= lengthens the MAIL FROM line by at most 500 characters,
    counted as sent, in xtext."""
    fits = "+" * 163 + "@example.co"  # each "+" is "+2B": 489 + 11 characters
    assert len(xtext_encode(fits)) == 500
    assert parse_mail_params("AUTH=" + xtext_encode(fits)).auth == fits
    assert MailParams(auth=fits).auth == fits
    too_long = fits + "m"
    assert "500" in _refused(parse_mail_params, "AUTH=" + xtext_encode(too_long)).message
    with pytest.raises(LocalProtocolError, match="500"):
        MailParams(auth=too_long)


# -- REQUIRETLS (RFC 8689) ----------------------------------------------------------------


def test_requiretls_is_a_flag() -> None:
    """RFC 8689 4.1: REQUIRETLS is a MAIL FROM parameter without a value."""
    params = parse_mail_params("RequireTLS")
    assert params == MailParams(requiretls=True)
    assert str(params) == "REQUIRETLS"
    assert params.keywords() == ("REQUIRETLS",)
    assert parse_mail_params("SIZE=1").requiretls is False


@pytest.mark.parametrize("text", ["REQUIRETLS=YES", "REQUIRETLS=1", "requiretls=<>"])
def test_requiretls_with_a_value_is_refused(text: str) -> None:
    """RFC 8689 4.1: the REQUIRETLS parameter takes no value."""
    assert "REQUIRETLS" in _refused(parse_mail_params, text).message


# -- MT-PRIORITY (RFC 6710) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "priority"),
    [("0", 0), ("9", 9), ("-9", -9), ("+9", 9), ("+0", 0), ("-0", 0), ("-3", -3), ("4", 4)],
)
def test_mt_priority_values(value: str, priority: int) -> None:
    """RFC 6710 3: priority-value is an optional "+" or "-" and one digit, -9 to 9."""
    params = parse_mail_params(f"mt-priority={value}")
    assert params == MailParams(mt_priority=priority)
    assert str(params) == f"MT-PRIORITY={priority}"


@pytest.mark.parametrize(
    "value", [None, "10", "-10", "09", "+", "-", "+-1", "1.0", "one", "\u0663", "+\uff11"]
)
def test_bad_mt_priority_is_refused(value: str | None) -> None:
    """RFC 6710 3: priority-value = ["+" / "-"] DIGIT; nothing else."""
    text = "MT-PRIORITY" if value is None else f"MT-PRIORITY={value}"
    assert "MT-PRIORITY" in _refused(parse_mail_params, text).message


# -- BY (RFC 2852) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "deliver_by", "written"),
    [
        ("120;R", DeliverBy(120, DeliverByMode.RETURN), "120;R"),
        ("120;rt", DeliverBy(120, DeliverByMode.RETURN, trace=True), "120;RT"),
        ("-30;N", DeliverBy(-30, DeliverByMode.NOTIFY), "-30;N"),
        ("0;n", DeliverBy(0, DeliverByMode.NOTIFY), "0;N"),
        ("+5;NT", DeliverBy(5, DeliverByMode.NOTIFY, trace=True), "5;NT"),
        ("000000007;R", DeliverBy(7, DeliverByMode.RETURN), "7;R"),
        ("999999999;R", DeliverBy(999_999_999, DeliverByMode.RETURN), "999999999;R"),
        ("-999999999;Nt", DeliverBy(-999_999_999, DeliverByMode.NOTIFY, True), "-999999999;NT"),
    ],
)
def test_deliver_by_values(value: str, deliver_by: DeliverBy, written: str) -> None:
    """RFC 2852 4: by-value = by-time ";" by-mode [by-trace], by-time =
    ["-" / "+"] 1*9digit; by-mode and by-trace in either case (RFC 5234 2.3)."""
    params = parse_mail_params(f"by={value}")
    assert params.deliver_by == deliver_by
    assert str(params) == f"BY={written}"
    assert parse_mail_params(str(params)) == params


@pytest.mark.parametrize(
    "value",
    [
        None,
        "120",
        "120;",
        ";R",
        "120;X",
        "120;T",
        "120;RTT",
        "120;RN",
        "120;TR",
        "1234567890;N",
        "1.5;N",
        "+-1;N",
        "120:R",
        "\u0661\u0662;N",
        "0;R",
        "-0;R",
        "-1;R",
        "-1;RT",
    ],
)
def test_bad_deliver_by_is_refused(value: str | None) -> None:
    """RFC 2852 4: the by-value syntax, and a by-time above zero for mode R."""
    text = "BY" if value is None else f"BY={value}"
    assert "BY" in _refused(parse_mail_params, text).message


@pytest.mark.parametrize(
    "fields",
    [
        {"seconds": 10**9, "mode": DeliverByMode.NOTIFY},
        {"seconds": -(10**9), "mode": DeliverByMode.NOTIFY},
        {"seconds": True, "mode": DeliverByMode.NOTIFY},
        {"seconds": "5", "mode": DeliverByMode.NOTIFY},
        {"seconds": 5, "mode": "R"},
        {"seconds": 5, "mode": DeliverByMode.NOTIFY, "trace": 1},
        {"seconds": 0, "mode": DeliverByMode.RETURN},
        {"seconds": -5, "mode": DeliverByMode.RETURN},
    ],
)
def test_invalid_deliver_by_is_refused(fields: dict[str, object]) -> None:
    """RFC 2852 4: by-time has at most 9 digits and is above zero for mode R."""
    with pytest.raises(LocalProtocolError, match="DeliverBy"):
        DeliverBy(**fields)  # type: ignore[arg-type]


# -- RRVS (RFC 7293) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rrvs"),
    [
        ("2014-04-03T23:01:00Z", Rrvs("2014-04-03T23:01:00Z")),
        ("1997-11-24T14:22:01-08:00;C", Rrvs("1997-11-24T14:22:01-08:00", RrvsAction.CONTINUE)),
        ("2003-07-01T10:52:37+02:00;r", Rrvs("2003-07-01T10:52:37+02:00", RrvsAction.REJECT)),
        ("2000-02-29t00:00:00.5z;c", Rrvs("2000-02-29t00:00:00.5z", RrvsAction.CONTINUE)),
        ("2024-02-29T23:59:60Z", Rrvs("2024-02-29T23:59:60Z")),
        ("0000-01-01T00:00:00+23:59", Rrvs("0000-01-01T00:00:00+23:59")),
        ("9999-12-31T23:59:59.123456789-00:00", Rrvs("9999-12-31T23:59:59.123456789-00:00")),
    ],
)
def test_rrvs_values(value: str, rrvs: Rrvs) -> None:
    """RFC 7293 3: rrvs-param = "RRVS=" date-time [";" ("C" / "R")], date-time
    of RFC 3339 5.6 ("T" and "Z" may be lower case), C and R in either case."""
    params = parse_rcpt_params(f"rrvs={value}")
    assert params == RcptParams(rrvs=rrvs)
    assert params.keywords() == ("RRVS",)
    assert parse_rcpt_params(str(params)) == params


def test_rrvs_keeps_the_timestamp_as_written() -> None:
    """RFC 7293 3: the date-time is passed on unchanged; the action is written
    uppercase and left out when none was given."""
    assert str(RcptParams(rrvs=Rrvs("2014-04-03t23:01:00z"))) == "RRVS=2014-04-03t23:01:00z"
    written = str(RcptParams(rrvs=Rrvs("2014-04-03T23:01:00Z", RrvsAction.CONTINUE)))
    assert written == "RRVS=2014-04-03T23:01:00Z;C"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "2014-04-03T23:01:00",
        "2014-04-03_23:01:00Z",
        "2014-04-03",
        "14-04-03T23:01:00Z",
        "2014-4-03T23:01:00Z",
        "2014-04-3T23:01:00Z",
        "2014-13-01T00:00:00Z",
        "2014-00-01T00:00:00Z",
        "2014-01-00T00:00:00Z",
        "2014-01-32T00:00:00Z",
        "2014-04-31T00:00:00Z",
        "2014-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2014-02-30T00:00:00Z",
        "2014-04-03T24:00:00Z",
        "2014-04-03T23:60:00Z",
        "2014-04-03T23:01:61Z",
        "2014-04-03T23:01Z",
        "2014-04-03T23:01:00.Z",
        "2014-04-03T23:01:00+24:00",
        "2014-04-03T23:01:00+0100",
        "2014-04-03T23:01:00+01:60",
        "2014-04-03T23:01:00UTC",
        "\u0662014-04-03T23:01:00Z",
        "2014-04-03T23:01:00Z;",
        "2014-04-03T23:01:00Z;X",
        "2014-04-03T23:01:00Z;CR",
        "2014-04-03T23:01:00Z;C;R",
        ";C",
    ],
)
def test_bad_rrvs_is_refused(value: str | None) -> None:
    """RFC 7293 3 and RFC 3339 5.6 and 5.7: a real date-time, then ";C", ";R"
    or nothing."""
    text = "RRVS" if value is None else f"RRVS={value}"
    assert "RRVS" in _refused(parse_rcpt_params, text).message


@given(rfc3339_timestamps())
def test_every_rfc3339_timestamp_is_accepted(timestamp: str) -> None:
    """RFC 3339 5.6: any date-time, leap days and leap seconds included."""
    assert parse_rcpt_params(f"RRVS={timestamp}").rrvs == Rrvs(timestamp)


@pytest.mark.parametrize(
    ("timestamp", "action"),
    [
        ("2014-02-29T00:00:00Z", None),
        ("2014-04-03T23:01:00", None),
        ("2014-04-03T23:01:00Z;C", None),
        (20140403, None),
        ("2014-04-03T23:01:00Z", "C"),
    ],
)
def test_invalid_rrvs_is_refused(timestamp: object, action: object) -> None:
    """RFC 7293 3: the timestamp is an RFC 3339 date-time; the action C or R."""
    with pytest.raises(LocalProtocolError, match="Rrvs"):
        Rrvs(timestamp, action)  # type: ignore[arg-type]


def test_rrvs_belongs_to_rcpt() -> None:
    """RFC 7293 3: RRVS is a RCPT parameter; on MAIL the caller decides, as it
    does for the MAIL-only AUTH, REQUIRETLS, MT-PRIORITY and BY on RCPT."""
    assert parse_mail_params("RRVS=2014-04-03T23:01:00Z").extra == (
        ("RRVS", "2014-04-03T23:01:00Z"),
    )
    rcpt = parse_rcpt_params("AUTH=<> REQUIRETLS MT-PRIORITY=1 BY=1;R")
    assert rcpt.extra == (("AUTH", "<>"), ("REQUIRETLS", None), ("MT-PRIORITY", "1"), ("BY", "1;R"))


# -- all of them -------------------------------------------------------------------------


def test_relay_keywords_and_values_are_case_insensitive() -> None:
    """RFC 5321 2.4 and RFC 5234 2.3: keywords and enumerated tokens in any case."""
    params = parse_mail_params("auth=<> RequireTls mt-Priority=-2 By=10;rT")
    assert params == MailParams(
        auth="<>",
        requiretls=True,
        mt_priority=-2,
        deliver_by=DeliverBy(10, DeliverByMode.RETURN, trace=True),
    )
    assert str(params) == "AUTH=<> REQUIRETLS MT-PRIORITY=-2 BY=10;RT"


@pytest.mark.parametrize(
    "text",
    [
        "AUTH=<> auth=<>",
        "AUTH=<> AUTH=a@example.com",
        "REQUIRETLS requiretls",
        "MT-PRIORITY=1 mt-priority=1",
        "BY=1;N By=2;R",
        "REQUIRETLS SIZE=1 RequireTLS=x",
    ],
)
def test_duplicate_relay_keywords_are_refused(text: str) -> None:
    """RFC 5321 4.1.2 with RFC 4954 5, RFC 8689 4.1, RFC 6710 3 and RFC 2852 4:
    each parameter at most once."""
    error = _refused(parse_mail_params, text)
    assert "duplicate parameter" in error.message
    assert text.split(" ")[0].partition("=")[0] in error.message


def test_duplicate_rrvs_is_refused() -> None:
    """RFC 7293 3 with RFC 5321 4.1.2: RRVS at most once per RCPT."""
    error = _refused(parse_rcpt_params, "RRVS=2014-04-03T23:01:00Z rrvs=2014-04-03T23:01:00Z")
    assert "duplicate parameter RRVS" in error.message


# -- xtext -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decoded", "encoded"),
    [
        ("", ""),
        ("abc", "abc"),
        ("a+b", "a+2Bb"),
        ("a=b", "a+3Db"),
        ("a b", "a+20b"),
        ("~!", "~!"),
        ("é", "+C3+A9"),
    ],
)
def test_xtext_known_values(decoded: str, encoded: str) -> None:
    """RFC 3461 4: xtext = *( xchar / hexchar ), hexchar = "+" 2HEXDIG (uppercase)."""
    assert xtext_encode(decoded) == encoded
    assert xtext_decode(encoded) == decoded


@given(st.text(st.characters(exclude_categories=["Cc", "Cs"])))
def test_xtext_round_trip(text: str) -> None:
    """RFC 3461 4: any text encodes to xtext and decodes back."""
    encoded = xtext_encode(text)
    assert all("!" <= char <= "~" and char != "=" for char in encoded)
    assert xtext_decode(encoded) == text


@pytest.mark.parametrize(
    "text",
    ["a+2b", "+", "+4", "+G0", "a=b", "a b", "é", "+00", "+0D+0A", "+7F", "+1F", "+C2+85", "+FF"],
)
def test_xtext_decode_refuses_malformed_text_and_controls(text: str) -> None:
    """RFC 3461 4: "+" is followed by two uppercase hex digits; no control characters."""
    with pytest.raises(ValueError):
        xtext_decode(text)


def test_xtext_decode_says_where_the_problem_is() -> None:
    """RFC 3461 4: a refusal names the offending character."""
    with pytest.raises(ValueError, match=r"got '\+2b' at offset 1"):
        xtext_decode("a+2b")
    with pytest.raises(ValueError, match=r"got '=' at offset 4"):
        xtext_decode("a+2B=")


# -- validation of user-built values ------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"size": -1},
        {"size": 10**20},
        {"size": True},
        {"size": "10"},
        {"body": "8BITMIME"},
        {"smtputf8": 1},
        {"ret": "FULL"},
        {"envid": ""},
        {"envid": "a\rb"},
        {"envid": "a\x00"},
        {"envid": 5},
        {"extra": [("X", "1")]},
        {"extra": (("X",),)},
        {"extra": (("x", "1"),)},
        {"extra": (("-X", "1"),)},
        {"extra": (("X", "1"), ("X", "2"))},
        {"extra": (("SIZE", "1"),)},
        {"extra": (("SMTPUTF8", None),)},
        {"extra": (("X", ""),)},
        {"extra": (("X", "a b"),)},
        {"extra": (("X", "a=b"),)},
        {"extra": (("X", "a\r\nRSET"),)},
        {"extra": (("X", 1),)},
        {"auth": ""},
        {"auth": "user"},
        {"auth": "<user@example.com>"},
        {"auth": "Postmaster"},
        {"auth": "a\r\n@example.com"},
        {"auth": 5},
        {"requiretls": 1},
        {"requiretls": None},
        {"mt_priority": 10},
        {"mt_priority": -10},
        {"mt_priority": True},
        {"mt_priority": "1"},
        {"deliver_by": "60;R"},
        {"deliver_by": 60},
        {"extra": (("AUTH", "<>"),)},
        {"extra": (("REQUIRETLS", None),)},
        {"extra": (("MT-PRIORITY", "1"),)},
        {"extra": (("BY", "1;N"),)},
    ],
)
def test_invalid_mail_params_are_refused(fields: dict[str, object]) -> None:
    """RFC 5321 4.1.2 and the extension RFCs: what str() writes must parse back."""
    with pytest.raises(LocalProtocolError, match="MailParams"):
        MailParams(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"notify": ()},
        {"notify": [Notify.SUCCESS]},
        {"notify": ("SUCCESS",)},
        {"notify": (Notify.NEVER, Notify.SUCCESS)},
        {"notify": (Notify.DELAY, Notify.DELAY)},
        {"orcpt": "rfc822;a@b"},
        {"extra": (("NOTIFY", "NEVER"),)},
        {"extra": (("ORCPT", "rfc822;a"),)},
        {"extra": (("X", "\x00"),)},
        {"rrvs": "2014-04-03T23:01:00Z"},
        {"extra": (("RRVS", "2014-04-03T23:01:00Z"),)},
    ],
)
def test_invalid_rcpt_params_are_refused(fields: dict[str, object]) -> None:
    """RFC 3461 4.1 and 4.2: NOTIFY combinations, ORCPT type, extra syntax."""
    with pytest.raises(LocalProtocolError, match="RcptParams"):
        RcptParams(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("addr_type", "address"),
    [("", "a"), ("rfc 822", "a"), ("rfc=822", "a"), ("rfc822;", "a"), ("rfc822", "a\nb"), (1, "a")],
)
def test_invalid_original_recipient_is_refused(addr_type: object, address: object) -> None:
    """RFC 3461 4.2: addr-type = atom; the address holds no control character."""
    with pytest.raises(LocalProtocolError, match="OriginalRecipient"):
        OriginalRecipient(addr_type, address)  # type: ignore[arg-type]


def test_valid_user_built_values_are_accepted() -> None:
    """RFC 3461 4.1: "NEVER" alone, or SUCCESS / FAILURE / DELAY without repeats."""
    assert RcptParams(notify=(Notify.NEVER,)).notify == (Notify.NEVER,)
    assert str(RcptParams(notify=(Notify.DELAY, Notify.FAILURE))) == "NOTIFY=DELAY,FAILURE"
    assert str(RcptParams(extra=(("SIZE", "1"),))) == "SIZE=1"
    assert str(MailParams(size=0)) == "SIZE=0"
    assert str(MailParams(envid="a b+c")) == "ENVID=a+20b+2Bc"


@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_parameter_error(text: str) -> None:
    """RFC 5321 4.1.2: any input gives parameters or a 501, and parsed values are valid."""
    for parse, kind in ((parse_mail_params, MailParams), (parse_rcpt_params, RcptParams)):
        try:
            params = parse(text)
        except ParameterError as error:
            assert (error.code, error.enhanced) == (501, "5.5.4")
            continue
        assert isinstance(params, kind)
        assert parse(str(params)) == params

# MAIL and RCPT parameters: RFC 5321 4.1.2 esmtp-param, typed where an RFC
# defines them (SIZE RFC 1870; BODY RFC 6152 and RFC 3030; SMTPUTF8 RFC 6531;
# RET, ENVID, NOTIFY, ORCPT RFC 3461; AUTH RFC 4954; REQUIRETLS RFC 8689;
# MT-PRIORITY RFC 6710; BY RFC 2852; RRVS, a RCPT parameter, RFC 7293), every
# other keyword kept as it came.
#
# Decisions a reader must know:
# - Parsing checks syntax, duplicates and the values of the keywords that
#   belong to the command at hand. Whether a keyword is acceptable in this
#   session (extension advertised, size under the limit) is the caller's call,
#   so unknown keywords, and known ones on the wrong command (SIZE on RCPT),
#   land in ``extra``, uppercased, in arrival order, for a relay to pass on.
# - ENVID, AUTH and the ORCPT address are stored decoded. xtext (RFC 3461 4) is
#   defined over ASCII; octets above 0x7F are read and written as UTF-8 so that
#   any text round-trips.
# - str() writes the wire form, and parsing it gives the same value back.
#   __post_init__ refuses any user-built value for which that would not hold.
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, fields
from typing import TypeAlias, TypeVar

from ._address import Address
from ._util import LocalProtocolError

__all__ = [
    "Body",
    "DeliverBy",
    "DeliverByMode",
    "MailParams",
    "Notify",
    "OriginalRecipient",
    "ParameterError",
    "RcptParams",
    "Ret",
    "Rrvs",
    "RrvsAction",
    "parse_mail_params",
    "parse_rcpt_params",
    "xtext_decode",
    "xtext_encode",
]

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_UPPER_KEYWORD = re.compile(r"[A-Z0-9][A-Z0-9-]*")
# esmtp-value, with RFC 6531's UTF8-non-ascii (less C1 controls and surrogates).
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u00a0-\ud7ff\ue000-\U0010ffff]+")
_SIZE = re.compile(r"[0-9]{1,20}")
# addr-type = atom (RFC 3461 4.2), less "=", which no esmtp-value may hold.
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/?^_`{|}~-]+")
_XCHARS = re.compile(r"[\x21-\x2a\x2c-\x3c\x3e-\x7e]*")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_HEXCHAR = re.compile(rb"\+([0-9A-F]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# priority-value: an optional sign and one digit (RFC 6710 3).
_MT_PRIORITY = re.compile(r"[+-]?[0-9]")
# by-value = by-time ";" by-mode [by-trace], by-time = ["-" / "+"] 1*9digit
# (RFC 2852 4); ABNF literals are case-insensitive (RFC 5234 2.3).
_BY_VALUE = re.compile(r"([+-]?[0-9]{1,9});([NnRr])([Tt]?)")
# date-time of RFC 3339 5.6, "T" and "Z" in either case (its note to 5.6). The
# day is checked against the month afterwards.
_DATE_TIME = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)

_MAX_SIZE = 10**20  # SIZE is 1*20DIGIT (RFC 1870)
_MAX_ENVID = 100  # RFC 3461 4.4
_MAX_ORCPT = 500  # RFC 3461 4.2
_MAX_AUTH = 500  # RFC 4954 3: AUTH= lengthens the MAIL line by up to 500 characters.
_MAX_BY_TIME = 999_999_999  # by-time is 1*9digit (RFC 2852 4)

_MAIL_KEYWORDS = frozenset(
    {"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH", "REQUIRETLS", "MT-PRIORITY", "BY"}
)
_RCPT_KEYWORDS = frozenset({"NOTIFY", "ORCPT", "RRVS"})

Extra: TypeAlias = tuple[tuple[str, str | None], ...]
_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")


class Body(enum.Enum):
    """BODY= of MAIL: RFC 6152 (7BIT, 8BITMIME) and RFC 3030 (BINARYMIME)."""

    SEVEN_BIT = "7BIT"
    EIGHT_BIT_MIME = "8BITMIME"
    BINARY_MIME = "BINARYMIME"


class Ret(enum.Enum):
    """RET= of MAIL (RFC 3461 4.3): what a failure DSN returns of the message."""

    FULL = "FULL"
    HDRS = "HDRS"


class Notify(enum.Enum):
    """One value of NOTIFY= of RCPT (RFC 3461 4.1)."""

    NEVER = "NEVER"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DELAY = "DELAY"


class DeliverByMode(enum.Enum):
    """by-mode of BY= (RFC 2852 4): what is done once the time has run out."""

    NOTIFY = "N"
    """Send a "delayed" DSN and go on trying to deliver."""
    RETURN = "R"
    """Give up and return the message as undeliverable."""


class RrvsAction(enum.Enum):
    """What may follow the date-time of RRVS= (RFC 7293 3): ";C" continue, ";R" reject."""

    CONTINUE = "C"
    REJECT = "R"


class ParameterError(ValueError):
    """A MAIL or RCPT parameter list that must be refused, with the reply to send."""

    def __init__(self, code: int, enhanced: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.enhanced = enhanced
        self.message = message


@dataclass(frozen=True, slots=True)
class OriginalRecipient:
    """ORCPT= of RCPT (RFC 3461 4.2): ``addr-type ";" xtext``.

    ``addr_type`` is kept as written (e.g. ``"rfc822"``); ``address`` is the
    decoded xtext.
    """

    addr_type: str
    address: str

    def __post_init__(self) -> None:
        if not isinstance(self.addr_type, str) or _ADDR_TYPE.fullmatch(self.addr_type) is None:
            raise LocalProtocolError(
                "OriginalRecipient.addr_type: expected an atom such as 'rfc822', "
                f"got {self.addr_type!r}"
            )
        _check_text("OriginalRecipient.address", self.address)
        length = len(self._wire())
        if length > _MAX_ORCPT:
            raise LocalProtocolError(
                f"OriginalRecipient: expected at most {_MAX_ORCPT} characters as xtext, "
                f"got {length}"
            )

    def __str__(self) -> str:
        return self._wire()

    def _wire(self) -> str:
        return f"{self.addr_type};{xtext_encode(self.address)}"


@dataclass(frozen=True, slots=True)
class DeliverBy:
    """BY= of MAIL (RFC 2852 4): ``by-time ";" by-mode [by-trace]``.

    ``seconds`` is the by-time, -999999999 to 999999999, the seconds within
    which the message is to be delivered; RETURN needs it above zero.
    ``trace`` is by-trace ("T").
    """

    seconds: int
    mode: DeliverByMode
    trace: bool = False

    def __post_init__(self) -> None:
        seconds = self.seconds
        if (
            not isinstance(seconds, int)
            or isinstance(seconds, bool)
            or not -_MAX_BY_TIME <= seconds <= _MAX_BY_TIME
        ):
            raise LocalProtocolError(
                f"DeliverBy.seconds: expected an int from {-_MAX_BY_TIME} to {_MAX_BY_TIME}, "
                f"got {seconds!r}"
            )
        if not isinstance(self.mode, DeliverByMode):
            raise LocalProtocolError(f"DeliverBy.mode: expected a DeliverByMode, got {self.mode!r}")
        if not isinstance(self.trace, bool):
            raise LocalProtocolError(f"DeliverBy.trace: expected a bool, got {self.trace!r}")
        if self.mode is DeliverByMode.RETURN and seconds <= 0:
            raise LocalProtocolError(
                f"DeliverBy.seconds: expected more than 0 with RETURN mode, got {seconds}"
            )

    def __str__(self) -> str:
        return f"{self.seconds};{self.mode.value}{'T' if self.trace else ''}"


@dataclass(frozen=True, slots=True)
class Rrvs:
    """RRVS= of RCPT (RFC 7293 3): ``date-time [";" ("C" / "R")]``.

    ``timestamp`` is an RFC 3339 date-time kept as written; ``action`` is None
    when the client named none.
    """

    timestamp: str
    action: RrvsAction | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.timestamp, str):
            raise LocalProtocolError(
                f"Rrvs.timestamp: expected str, got {type(self.timestamp).__name__}"
            )
        problem = _date_time_problem(self.timestamp)
        if problem is not None:
            raise LocalProtocolError(f"Rrvs.timestamp: {problem}")
        if self.action is not None and not isinstance(self.action, RrvsAction):
            raise LocalProtocolError(
                f"Rrvs.action: expected an RrvsAction or None, got {self.action!r}"
            )

    def __str__(self) -> str:
        if self.action is None:
            return self.timestamp
        return f"{self.timestamp};{self.action.value}"


@dataclass(frozen=True, slots=True, repr=False)
class MailParams:
    """The parameters of MAIL FROM.

    ``auth`` is the decoded AUTH= value: ``"<>"`` or a mailbox (RFC 4954 5).
    ``mt_priority`` is -9 to 9 (RFC 6710). ``extra`` holds every other keyword,
    uppercase, in arrival order, with its value or None.
    """

    size: int | None = None
    body: Body | None = None
    smtputf8: bool = False
    ret: Ret | None = None
    envid: str | None = None
    auth: str | None = None
    requiretls: bool = False
    mt_priority: int | None = None
    deliver_by: DeliverBy | None = None
    extra: Extra = ()

    def __post_init__(self) -> None:
        size = self.size
        if size is not None and (
            not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < _MAX_SIZE
        ):
            raise LocalProtocolError(
                f"MailParams.size: expected None or an int from 0 to 20 digits, got {size!r}"
            )
        if self.body is not None and not isinstance(self.body, Body):
            raise LocalProtocolError(f"MailParams.body: expected a Body or None, got {self.body!r}")
        if not isinstance(self.smtputf8, bool):
            raise LocalProtocolError(f"MailParams.smtputf8: expected a bool, got {self.smtputf8!r}")
        if self.ret is not None and not isinstance(self.ret, Ret):
            raise LocalProtocolError(f"MailParams.ret: expected a Ret or None, got {self.ret!r}")
        if self.envid is not None:
            _check_text("MailParams.envid", self.envid)
            length = len(xtext_encode(self.envid))
            if not 0 < length <= _MAX_ENVID:
                raise LocalProtocolError(
                    f"MailParams.envid: expected 1 to {_MAX_ENVID} characters as xtext, "
                    f"got {length}"
                )
        if self.auth is not None:
            _check_text("MailParams.auth", self.auth)
            problem = _auth_problem(self.auth)
            if problem is not None:
                raise LocalProtocolError(f"MailParams.auth: {problem}")
        if not isinstance(self.requiretls, bool):
            raise LocalProtocolError(
                f"MailParams.requiretls: expected a bool, got {self.requiretls!r}"
            )
        priority = self.mt_priority
        if priority is not None and (
            not isinstance(priority, int) or isinstance(priority, bool) or not -9 <= priority <= 9
        ):
            raise LocalProtocolError(
                f"MailParams.mt_priority: expected None or an int from -9 to 9, got {priority!r}"
            )
        if self.deliver_by is not None and not isinstance(self.deliver_by, DeliverBy):
            raise LocalProtocolError(
                f"MailParams.deliver_by: expected a DeliverBy or None, got {self.deliver_by!r}"
            )
        _check_extra("MailParams.extra", self.extra, _MAIL_KEYWORDS)

    def __str__(self) -> str:
        words = []
        if self.size is not None:
            words.append(f"SIZE={self.size}")
        if self.body is not None:
            words.append(f"BODY={self.body.value}")
        if self.smtputf8:
            words.append("SMTPUTF8")
        if self.ret is not None:
            words.append(f"RET={self.ret.value}")
        if self.envid is not None:
            words.append(f"ENVID={xtext_encode(self.envid)}")
        if self.auth is not None:
            words.append(f"AUTH={xtext_encode(self.auth)}")
        if self.requiretls:
            words.append("REQUIRETLS")
        if self.mt_priority is not None:
            words.append(f"MT-PRIORITY={self.mt_priority}")
        if self.deliver_by is not None:
            words.append(f"BY={self.deliver_by}")
        if self.extra:
            words.extend(_extra_words(self.extra))
        return " ".join(words)

    def __repr__(self) -> str:
        return _repr_set_fields(self)

    def keywords(self) -> tuple[str, ...]:
        """The uppercase keywords present: typed ones first, then ``extra``."""
        # Plain tests rather than a table: the client and the server ask
        # this of every MAIL.
        present: list[str] = []
        if self.size is not None:
            present.append("SIZE")
        if self.body is not None:
            present.append("BODY")
        if self.smtputf8:
            present.append("SMTPUTF8")
        if self.ret is not None:
            present.append("RET")
        if self.envid is not None:
            present.append("ENVID")
        if self.auth is not None:
            present.append("AUTH")
        if self.requiretls:
            present.append("REQUIRETLS")
        if self.mt_priority is not None:
            present.append("MT-PRIORITY")
        if self.deliver_by is not None:
            present.append("BY")
        for keyword, _ in self.extra:
            present.append(keyword)
        return tuple(present)


@dataclass(frozen=True, slots=True, repr=False)
class RcptParams:
    """The parameters of RCPT TO.

    ``notify`` is ``(Notify.NEVER,)`` or a non-empty set of SUCCESS, FAILURE and
    DELAY, in the order given. ``rrvs`` is RRVS= (RFC 7293), a RCPT parameter
    because each recipient's mailbox has its own date. ``extra`` as for
    MailParams.
    """

    notify: tuple[Notify, ...] | None = None
    orcpt: OriginalRecipient | None = None
    rrvs: Rrvs | None = None
    extra: Extra = ()

    def __post_init__(self) -> None:
        notify = self.notify
        if notify is not None:
            if not isinstance(notify, tuple) or not all(isinstance(n, Notify) for n in notify):
                raise LocalProtocolError(
                    f"RcptParams.notify: expected None or a tuple of Notify, got {notify!r}"
                )
            problem = _notify_problem(notify)
            if problem is not None:
                raise LocalProtocolError(f"RcptParams.notify: {problem}")
        if self.orcpt is not None and not isinstance(self.orcpt, OriginalRecipient):
            raise LocalProtocolError(
                f"RcptParams.orcpt: expected an OriginalRecipient or None, got {self.orcpt!r}"
            )
        if self.rrvs is not None and not isinstance(self.rrvs, Rrvs):
            raise LocalProtocolError(
                f"RcptParams.rrvs: expected an Rrvs or None, got {self.rrvs!r}"
            )
        _check_extra("RcptParams.extra", self.extra, _RCPT_KEYWORDS)

    def __str__(self) -> str:
        words = []
        if self.notify is not None:
            words.append("NOTIFY=" + ",".join(item.value for item in self.notify))
        if self.orcpt is not None:
            words.append(f"ORCPT={self.orcpt}")
        if self.rrvs is not None:
            words.append(f"RRVS={self.rrvs}")
        if self.extra:
            words.extend(_extra_words(self.extra))
        return " ".join(words)

    def __repr__(self) -> str:
        return _repr_set_fields(self)

    def keywords(self) -> tuple[str, ...]:
        """The uppercase keywords present: typed ones first, then ``extra``."""
        present: list[str] = []
        if self.notify is not None:
            present.append("NOTIFY")
        if self.orcpt is not None:
            present.append("ORCPT")
        if self.rrvs is not None:
            present.append("RRVS")
        for keyword, _ in self.extra:
            present.append(keyword)
        return tuple(present)


def parse_mail_params(text: str) -> MailParams:
    """Parse the parameters after the reverse path of MAIL FROM.

    Raises ParameterError(501, "5.5.4", ...) for bad syntax, a repeated keyword
    or a bad value of SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH, REQUIRETLS,
    MT-PRIORITY or BY.
    """
    if not text:
        return _NO_MAIL_PARAMS
    size: int | None = None
    body: Body | None = None
    smtputf8 = False
    ret: Ret | None = None
    envid: str | None = None
    auth: str | None = None
    requiretls = False
    mt_priority: int | None = None
    deliver_by: DeliverBy | None = None
    extra: list[tuple[str, str | None]] = []
    for keyword, value in _split(text):
        if keyword not in _MAIL_KEYWORDS:
            extra.append((keyword, value))
        elif keyword in _MAIL_FLAGS:
            # RFC 6531 3.4 and RFC 8689 4.1: these parameters take no value.
            if value is not None:
                raise _refuse(f"expected {keyword} without a value, got {keyword}={value}")
            if keyword == "SMTPUTF8":
                smtputf8 = True
            else:
                requiretls = True
        elif value is None:
            raise _refuse(f"expected a value for {keyword}, got {keyword} alone")
        elif keyword == "SIZE":
            if _SIZE.fullmatch(value) is None:
                raise _refuse(f"expected SIZE=1 to 20 digits, got SIZE={value}")
            size = int(value)
        elif keyword == "BODY":
            body = _enum_value(_BODY_BY_NAME, keyword, value)
        elif keyword == "RET":
            ret = _enum_value(_RET_BY_NAME, keyword, value)
        elif keyword == "ENVID":
            if len(value) > _MAX_ENVID:
                raise _refuse(
                    f"expected ENVID of at most {_MAX_ENVID} characters, got {len(value)}"
                )
            envid = _decode_value(keyword, value)
        elif keyword == "AUTH":
            auth = _parse_auth(value)
        elif keyword == "MT-PRIORITY":
            if _MT_PRIORITY.fullmatch(value) is None:
                raise _refuse(
                    f"expected MT-PRIORITY=-9 to 9 (one digit, optional sign), "
                    f"got MT-PRIORITY={value}"
                )
            mt_priority = int(value)
        else:  # BY
            deliver_by = _parse_deliver_by(value)
    params = _trusted(
        MailParams,
        size=size,
        body=body,
        smtputf8=smtputf8,
        ret=ret,
        envid=envid,
        auth=auth,
        requiretls=requiretls,
        mt_priority=mt_priority,
        deliver_by=deliver_by,
        extra=tuple(extra),
    )
    return _NO_MAIL_PARAMS if params == _NO_MAIL_PARAMS else params


def parse_rcpt_params(text: str) -> RcptParams:
    """Parse the parameters after the forward path of RCPT TO.

    Raises ParameterError(501, "5.5.4", ...) for bad syntax, a repeated keyword
    or a bad value of NOTIFY, ORCPT or RRVS.
    """
    if not text:
        return _NO_RCPT_PARAMS
    notify: tuple[Notify, ...] | None = None
    orcpt: OriginalRecipient | None = None
    rrvs: Rrvs | None = None
    extra: list[tuple[str, str | None]] = []
    for keyword, value in _split(text):
        if keyword not in _RCPT_KEYWORDS:
            extra.append((keyword, value))
        elif value is None:
            raise _refuse(f"expected a value for {keyword}, got {keyword} alone")
        elif keyword == "NOTIFY":
            notify = _parse_notify(value)
        elif keyword == "ORCPT":
            orcpt = _parse_orcpt(value)
        else:  # RRVS
            rrvs = _parse_rrvs(value)
    params = _trusted(RcptParams, notify=notify, orcpt=orcpt, rrvs=rrvs, extra=tuple(extra))
    return _NO_RCPT_PARAMS if params == _NO_RCPT_PARAMS else params


def xtext_encode(text: str) -> str:
    """Write ``text`` as xtext (RFC 3461 4): "+", "=" and all but "!".."~" as +XX.

    Characters above U+007F are written as the +XX of their UTF-8 octets.
    Raises ValueError (UnicodeEncodeError) for a lone surrogate.
    """
    if _XCHARS.fullmatch(text) is not None:
        return text
    pieces = []
    for char in text:
        if "!" <= char <= "~" and char != "+" and char != "=":
            pieces.append(char)
        else:
            pieces.extend(f"+{octet:02X}" for octet in char.encode("utf-8"))
    return "".join(pieces)


def xtext_decode(text: str) -> str:
    """Read xtext (RFC 3461 4). Octets above 0x7F are read as UTF-8.

    Raises ValueError for a character outside xchar, a "+" not followed by two
    uppercase hex digits, invalid UTF-8, or a decoded control character.
    """
    if _XCHARS.fullmatch(text) is not None:
        return text
    if _XTEXT.fullmatch(text) is None:
        raise ValueError(_xtext_problem(text))
    octets = _HEXCHAR.sub(lambda match: bytes([int(match.group(1), 16)]), text.encode("ascii"))
    try:
        decoded = octets.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"expected xtext encoding UTF-8, got {text!r}") from None
    bad = _CONTROL.search(decoded)
    if bad is not None:
        raise ValueError(
            f"expected xtext without control characters, got {bad.group()!r} in {text!r}"
        )
    return decoded


def _xtext_problem(text: str) -> str:
    index = 0
    while index < len(text):
        char = text[index]
        if char == "+":
            escape = text[index : index + 3]
            if re.fullmatch(r"\+[0-9A-F]{2}", escape) is None:
                return (
                    "expected '+' and two uppercase hex digits in xtext, "
                    f"got {escape!r} at offset {index} in {text!r}"
                )
            index += 3
        elif "!" <= char <= "~" and char != "=":
            index += 1
        else:
            break
    return (
        "expected xtext characters '!' to '~' other than '+' and '=', "
        f"got {text[index : index + 1]!r} at offset {index} in {text!r}"
    )


def _split(text: str) -> list[tuple[str, str | None]]:
    """Split ``esmtp-param *(SP esmtp-param)`` into uppercase keywords and values."""
    params: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for word in text.split(" "):
        if not word:
            continue  # runs of spaces between parameters are tolerated
        keyword, equals, value = word.partition("=")
        if _KEYWORD.fullmatch(keyword) is None:
            raise _refuse(
                "expected a parameter keyword (a letter or digit, then letters, digits "
                f"and '-'), got {keyword!r} in {word!r}"
            )
        keyword = keyword.upper()
        if keyword in seen:
            raise _refuse(f"duplicate parameter {keyword}")
        seen.add(keyword)
        if not equals:
            params.append((keyword, None))
        elif _VALUE.fullmatch(value) is None:
            raise _refuse(
                f"expected a value for {keyword} of characters other than SP, '=' and "
                f"controls, got {value!r}"
            )
        else:
            params.append((keyword, value))
    return params


def _enum_value(members: dict[str, _E], keyword: str, value: str) -> _E:
    # isascii first: U+017F (long s) upper-cases to "S" and must not make a value valid.
    member = members.get(value.upper()) if value.isascii() else None
    if member is not None:
        return member
    choices = ", ".join(members)
    raise _refuse(f"expected {keyword} to be one of {choices}, got {keyword}={value}")


def _decode_value(keyword: str, value: str) -> str:
    try:
        return xtext_decode(value)
    except ValueError as error:
        raise _refuse(f"{keyword}: {error}") from None


def _parse_notify(value: str) -> tuple[Notify, ...]:
    items: list[Notify] = []
    for word in value.split(","):
        item = _NOTIFY_BY_NAME.get(word.upper()) if word.isascii() else None
        if item is None:
            raise _refuse(
                "expected NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY separated by ',', "
                f"got {word!r} in NOTIFY={value}"
            )
        items.append(item)
    notify = tuple(items)
    problem = _notify_problem(notify)
    if problem is not None:
        raise _refuse(f"{problem} in NOTIFY={value}")
    return notify


def _notify_problem(notify: tuple[Notify, ...]) -> str | None:
    if not notify:
        return "expected at least one value, got none"
    if Notify.NEVER in notify and len(notify) > 1:
        return "expected NEVER alone, got it combined with other values"
    if len(set(notify)) != len(notify):
        return "expected each value at most once, got a repeat"
    return None


def _parse_orcpt(value: str) -> OriginalRecipient:
    if len(value) > _MAX_ORCPT:
        raise _refuse(f"expected ORCPT of at most {_MAX_ORCPT} characters, got {len(value)}")
    addr_type, semicolon, encoded = value.partition(";")
    if not semicolon:
        raise _refuse(f"expected ORCPT=addr-type;address, got ORCPT={value} without ';'")
    if _ADDR_TYPE.fullmatch(addr_type) is None:
        raise _refuse(f"expected an addr-type atom such as 'rfc822' in ORCPT, got {addr_type!r}")
    address = _decode_value("ORCPT", encoded)
    return _trusted(OriginalRecipient, addr_type=addr_type, address=address)


def _parse_auth(value: str) -> str:
    if len(value) > _MAX_AUTH:
        raise _refuse(f"expected AUTH of at most {_MAX_AUTH} characters, got {len(value)}")
    mailbox = _decode_value("AUTH", value)
    problem = _auth_problem(mailbox)
    if problem is not None:
        raise _refuse(f"AUTH: {problem}")
    return mailbox


def _auth_problem(mailbox: str) -> str | None:
    """What is wrong with a decoded AUTH= value, or None.

    RFC 4954 5: the value is "<>" or an addr-spec; a mailbox as SMTP writes it
    (RFC 5321 4.1.2, UTF-8 allowed) is taken as the addr-spec.
    """
    if mailbox == "<>":
        return None
    try:
        address = Address.parse(mailbox)
    except LocalProtocolError as error:
        reason = str(error).removeprefix("Address.parse: ")
        return f"expected <> or a mailbox, got {mailbox!r}: {reason}"
    if address.domain is None:
        return f"expected <> or a mailbox with a domain, got {mailbox!r}"
    length = len(xtext_encode(mailbox))
    if length > _MAX_AUTH:
        return f"expected at most {_MAX_AUTH} characters as xtext, got {length}"
    return None


def _parse_deliver_by(value: str) -> DeliverBy:
    match = _BY_VALUE.fullmatch(value)
    if match is None:
        raise _refuse(
            "expected BY=by-time;by-mode[T]: an integer of 1 to 9 digits with an optional "
            f"sign, ';', N or R, and an optional T, got BY={value}"
        )
    seconds = int(match.group(1))
    mode = _DELIVER_BY_MODE_BY_NAME[match.group(2).upper()]
    # RFC 2852 4: a by-time of zero or less makes no sense with mode R.
    if mode is DeliverByMode.RETURN and seconds <= 0:
        raise _refuse(f"expected a by-time above 0 with mode R, got BY={value}")
    return _trusted(DeliverBy, seconds=seconds, mode=mode, trace=bool(match.group(3)))


def _parse_rrvs(value: str) -> Rrvs:
    timestamp, semicolon, action_name = value.partition(";")
    problem = _date_time_problem(timestamp)
    if problem is not None:
        raise _refuse(f"RRVS: {problem}")
    action: RrvsAction | None = None
    if semicolon:
        action = _RRVS_ACTION_BY_NAME.get(action_name.upper()) if action_name.isascii() else None
        if action is None:
            raise _refuse(
                f"expected RRVS=date-time, then ';C' or ';R' or nothing, got RRVS={value}"
            )
    return _trusted(Rrvs, timestamp=timestamp, action=action)


def _date_time_problem(text: str) -> str | None:
    """What keeps ``text`` from being an RFC 3339 5.6 date-time, or None."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return (
            "expected an RFC 3339 date-time such as 2014-04-03T23:01:00Z or "
            f"1997-11-24T14:22:01-08:00, got {text!r}"
        )
    year, month, day = (int(part) for part in match.group(1, 2, 3))
    # RFC 3339 5.7: the day must exist in that month of that year.
    if day > _days_in_month(year, month):
        return f"expected a day that exists in {year:04d}-{month:02d}, got {text!r}"
    return None


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _trusted(kind: type[_T], **values: object) -> _T:
    """Build a dataclass from values the parser already checked, skipping
    __post_init__."""
    built = object.__new__(kind)
    for name, value in values.items():
        object.__setattr__(built, name, value)
    return built


def _check_text(field: str, text: object) -> None:
    if not isinstance(text, str):
        raise LocalProtocolError(f"{field}: expected str, got {type(text).__name__}")
    bad = _CONTROL.search(text)
    if bad is not None:
        raise LocalProtocolError(
            f"{field}: expected no control characters, got {bad.group()!r} in {text!r}"
        )


def _check_extra(field: str, extra: object, typed: frozenset[str]) -> None:
    if not isinstance(extra, tuple):
        raise LocalProtocolError(
            f"{field}: expected a tuple of (keyword, value) pairs, got {extra!r}"
        )
    seen: set[str] = set()
    for pair in extra:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise LocalProtocolError(f"{field}: expected (keyword, value) pairs, got {pair!r}")
        keyword, value = pair
        if not isinstance(keyword, str) or _UPPER_KEYWORD.fullmatch(keyword) is None:
            raise LocalProtocolError(
                f"{field}: expected an uppercase keyword (a letter or digit, then letters, "
                f"digits and '-'), got {keyword!r}"
            )
        if keyword in typed:
            raise LocalProtocolError(
                f"{field}: expected keywords other than {', '.join(sorted(typed))}, which have "
                f"their own fields, got {keyword}"
            )
        if keyword in seen:
            raise LocalProtocolError(f"{field}: expected each keyword once, got {keyword} twice")
        seen.add(keyword)
        if value is not None and (not isinstance(value, str) or _VALUE.fullmatch(value) is None):
            raise LocalProtocolError(
                f"{field}: expected None or a value of characters other than SP, '=' and "
                f"controls for {keyword}, got {value!r}"
            )


def _extra_words(extra: Extra) -> list[str]:
    return [keyword if value is None else f"{keyword}={value}" for keyword, value in extra]


def _refuse(message: str) -> ParameterError:
    return ParameterError(501, "5.5.4", message)


_BODY_BY_NAME = {item.value: item for item in Body}
_RET_BY_NAME = {item.value: item for item in Ret}
_NOTIFY_BY_NAME = {item.value: item for item in Notify}
_DELIVER_BY_MODE_BY_NAME = {item.value: item for item in DeliverByMode}
_RRVS_ACTION_BY_NAME = {item.value: item for item in RrvsAction}
_MAIL_FLAGS = frozenset({"SMTPUTF8", "REQUIRETLS"})
# Built last: __post_init__ needs the helpers above.
_NO_MAIL_PARAMS = MailParams()
_NO_RCPT_PARAMS = RcptParams()


def _repr_set_fields(value: object) -> str:
    """``Name(field=value, ...)`` with only the fields that differ from their
    defaults, so that events print the way the command reads."""
    parts = []
    for item in fields(value):  # type: ignore[arg-type]
        current = getattr(value, item.name)
        if current != item.default:
            parts.append(f"{item.name}={current!r}")
    return f"{type(value).__name__}({', '.join(parts)})"

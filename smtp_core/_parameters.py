# MAIL and RCPT parameters: RFC 5321 4.1.2 esmtp-param, typed where an RFC
# defines them (SIZE RFC 1870; BODY RFC 6152 and RFC 3030; SMTPUTF8 RFC 6531;
# RET, ENVID, NOTIFY, ORCPT RFC 3461), every other keyword kept as it came.
#
# Decisions a reader must know:
# - Parsing checks syntax, duplicates and the values of the keywords that
#   belong to the command at hand. Whether a keyword is acceptable in this
#   session (extension advertised, size under the limit) is the caller's call,
#   so unknown keywords, and known ones on the wrong command (SIZE on RCPT),
#   land in ``extra``, uppercased, in arrival order, for a relay to pass on.
# - ENVID and the ORCPT address are stored decoded. xtext (RFC 3461 4) is
#   defined over ASCII; octets above 0x7F are read and written as UTF-8 so that
#   any text round-trips.
# - str() writes the wire form, and parsing it gives the same value back.
#   __post_init__ refuses any user-built value for which that would not hold.
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, fields
from typing import TypeAlias, TypeVar

from ._util import LocalProtocolError

__all__ = [
    "Body",
    "MailParams",
    "Notify",
    "OriginalRecipient",
    "ParameterError",
    "RcptParams",
    "Ret",
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

_MAX_SIZE = 10**20  # SIZE is 1*20DIGIT (RFC 1870)
_MAX_ENVID = 100  # RFC 3461 4.4
_MAX_ORCPT = 500  # RFC 3461 4.2

_MAIL_KEYWORDS = frozenset({"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID"})
_RCPT_KEYWORDS = frozenset({"NOTIFY", "ORCPT"})

Extra: TypeAlias = tuple[tuple[str, str | None], ...]
_E = TypeVar("_E", bound=enum.Enum)


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


@dataclass(frozen=True, slots=True, repr=False)
class MailParams:
    """The parameters of MAIL FROM.

    ``extra`` holds every other keyword, uppercase, in arrival order, with its
    value or None.
    """

    size: int | None = None
    body: Body | None = None
    smtputf8: bool = False
    ret: Ret | None = None
    envid: str | None = None
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
        words.extend(_extra_words(self.extra))
        return " ".join(words)

    def __repr__(self) -> str:
        return _repr_set_fields(self)

    def keywords(self) -> tuple[str, ...]:
        """The uppercase keywords present: typed ones first, then ``extra``."""
        present = [
            keyword
            for keyword, is_present in (
                ("SIZE", self.size is not None),
                ("BODY", self.body is not None),
                ("SMTPUTF8", self.smtputf8),
                ("RET", self.ret is not None),
                ("ENVID", self.envid is not None),
            )
            if is_present
        ]
        return (*present, *(keyword for keyword, _ in self.extra))


@dataclass(frozen=True, slots=True, repr=False)
class RcptParams:
    """The parameters of RCPT TO.

    ``notify`` is ``(Notify.NEVER,)`` or a non-empty set of SUCCESS, FAILURE and
    DELAY, in the order given. ``extra`` as for MailParams.
    """

    notify: tuple[Notify, ...] | None = None
    orcpt: OriginalRecipient | None = None
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
        _check_extra("RcptParams.extra", self.extra, _RCPT_KEYWORDS)

    def __str__(self) -> str:
        words = []
        if self.notify is not None:
            words.append("NOTIFY=" + ",".join(item.value for item in self.notify))
        if self.orcpt is not None:
            words.append(f"ORCPT={self.orcpt}")
        words.extend(_extra_words(self.extra))
        return " ".join(words)

    def __repr__(self) -> str:
        return _repr_set_fields(self)

    def keywords(self) -> tuple[str, ...]:
        """The uppercase keywords present: typed ones first, then ``extra``."""
        present = [
            keyword
            for keyword, is_present in (
                ("NOTIFY", self.notify is not None),
                ("ORCPT", self.orcpt is not None),
            )
            if is_present
        ]
        return (*present, *(keyword for keyword, _ in self.extra))


def parse_mail_params(text: str) -> MailParams:
    """Parse the parameters after the reverse path of MAIL FROM.

    Raises ParameterError(501, "5.5.4", ...) for bad syntax, a repeated keyword
    or a bad value of SIZE, BODY, SMTPUTF8, RET or ENVID.
    """
    if not text:
        return _NO_MAIL_PARAMS
    size: int | None = None
    body: Body | None = None
    smtputf8 = False
    ret: Ret | None = None
    envid: str | None = None
    extra: list[tuple[str, str | None]] = []
    for keyword, value in _split(text):
        if keyword not in _MAIL_KEYWORDS:
            extra.append((keyword, value))
        elif keyword == "SMTPUTF8":
            if value is not None:
                raise _refuse(f"expected SMTPUTF8 without a value, got SMTPUTF8={value}")
            smtputf8 = True
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
        else:  # ENVID
            if len(value) > _MAX_ENVID:
                raise _refuse(
                    f"expected ENVID of at most {_MAX_ENVID} characters, got {len(value)}"
                )
            envid = _decode_value(keyword, value)
    if (
        size is None
        and body is None
        and not smtputf8
        and ret is None
        and envid is None
        and not extra
    ):
        return _NO_MAIL_PARAMS
    params = object.__new__(MailParams)
    object.__setattr__(params, "size", size)
    object.__setattr__(params, "body", body)
    object.__setattr__(params, "smtputf8", smtputf8)
    object.__setattr__(params, "ret", ret)
    object.__setattr__(params, "envid", envid)
    object.__setattr__(params, "extra", tuple(extra))
    return params


def parse_rcpt_params(text: str) -> RcptParams:
    """Parse the parameters after the forward path of RCPT TO.

    Raises ParameterError(501, "5.5.4", ...) for bad syntax, a repeated keyword
    or a bad value of NOTIFY or ORCPT.
    """
    if not text:
        return _NO_RCPT_PARAMS
    notify: tuple[Notify, ...] | None = None
    orcpt: OriginalRecipient | None = None
    extra: list[tuple[str, str | None]] = []
    for keyword, value in _split(text):
        if keyword not in _RCPT_KEYWORDS:
            extra.append((keyword, value))
        elif value is None:
            raise _refuse(f"expected a value for {keyword}, got {keyword} alone")
        elif keyword == "NOTIFY":
            notify = _parse_notify(value)
        else:  # ORCPT
            orcpt = _parse_orcpt(value)
    if notify is None and orcpt is None and not extra:
        return _NO_RCPT_PARAMS
    params = object.__new__(RcptParams)
    object.__setattr__(params, "notify", notify)
    object.__setattr__(params, "orcpt", orcpt)
    object.__setattr__(params, "extra", tuple(extra))
    return params


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
    orcpt = object.__new__(OriginalRecipient)
    object.__setattr__(orcpt, "addr_type", addr_type)
    object.__setattr__(orcpt, "address", address)
    return orcpt


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

# Bytes to events: command lines (server) and reply lines (client).
#
# A command line is judged in a fixed order, the one Postfix and aiosmtpd use:
# encoding and control characters, then the verb, then whether the command
# may come now (the table), then its syntax, then the rules that depend on
# what is in force (parameters, addresses, limits). The first fault gives the
# CommandError and the suggested reply.
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from ._address import Address, PathError, parse_forward_path, parse_reverse_path
from ._config import ServerConfig
from ._events import (
    Auth,
    AuthCancel,
    AuthResponse,
    Bdat,
    Command,
    CommandError,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    Lhlo,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    StartTls,
    Vrfy,
    Xclient,
    Xforward,
    _trusted,
)
from ._parameters import ParameterError, parse_mail_params, parse_rcpt_params, xtext_decode
from ._receivebuffer import Line
from ._state import TABLE, Policy, Refusal, Session, check_command, command_line_limit
from ._util import LocalProtocolError, RemoteProtocolError

__all__ = [
    "BdatSyntaxError",
    "parse_auth_response",
    "parse_bdat",
    "parse_command",
    "parse_reply_line",
]

_CONTROLS = bytes(range(32)) + b"\x7f"
_REPLY_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REPLY_CONTROLS = bytes(range(9)) + bytes(range(10, 32)) + b"\x7f"  # the same, for translate

# RFC 5321 4.1.1 and 4.1.5: verbs that exist but that this server does not
# carry out (yet); they get 502 rather than 500.
_NOT_IMPLEMENTED = frozenset({"TURN", "SEND", "SOML", "SAML", "ETRN", "ATRN"})
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")
_ATTRIBUTE = re.compile(r"[A-Z][A-Z0-9-]*")


_MAX_DOMAIN = 255


# Suggested replies quote what was wrong; the quote is cut so that the reply
# line stays within RFC 5321 4.5.3.1.5's 512 octets however long the input.
_MAX_REPLY_TEXT = 400


def _short(text: str) -> str:
    if len(text.encode("utf-8", "surrogateescape")) <= _MAX_REPLY_TEXT:
        return text
    return (
        text.encode("utf-8", "surrogateescape")[: _MAX_REPLY_TEXT - 3].decode("utf-8", "ignore")
        + "..."
    )


class _Refused(Exception):
    def __init__(self, code: int, enhanced: str, text: str) -> None:
        self.reply = Reply(code, _short(text), enhanced)


def _no_argument(name: str, argument: str, config: ServerConfig) -> None:
    if argument and (config.strict or argument.strip(" \t")):
        raise _Refused(501, "5.5.4", f"{name} takes no argument")


def _parse_hello(name: str, argument: str, config: ServerConfig) -> str:
    domain = argument.strip(" \t") if not config.strict else argument
    if not domain:
        raise _Refused(501, "5.5.4", f"{name} needs a domain name or address literal")
    if len(domain.encode("utf-8", "surrogateescape")) > _MAX_DOMAIN:
        # RFC 5321 4.5.3.1.2: a domain is at most 255 octets.
        raise _Refused(501, "5.5.4", f"{name} domain longer than {_MAX_DOMAIN} octets")
    if config.strict or " " in domain:
        # RFC 5321 4.1.1.1: ehlo = "EHLO" SP ( Domain / address-literal )
        try:
            Address("x", domain)
        except LocalProtocolError:
            raise _Refused(501, "5.5.4", f"{name} needs a domain name or address literal") from None
    return domain


def _ehlo(argument: str, config: ServerConfig) -> Command:
    return _trusted(Ehlo, _parse_hello("EHLO", argument, config))


def _helo(argument: str, config: ServerConfig) -> Command:
    return _trusted(Helo, _parse_hello("HELO", argument, config))


def _prefixed(argument: str, prefix: str, config: ServerConfig) -> str:
    if argument[: len(prefix)].upper() != prefix:
        raise _Refused(501, "5.5.4", f"syntax: expected {prefix}<address>")
    return argument[len(prefix) :]


def _mail(argument: str, config: ServerConfig) -> Command:
    rest = _prefixed(argument, "FROM:", config)
    try:
        path, params_text = parse_reverse_path(rest, strict=config.strict)
    except PathError as error:
        raise _Refused(501, "5.1.7", f"bad sender address syntax: {error}") from None
    try:
        params = parse_mail_params(params_text)
    except ParameterError as error:
        raise _Refused(error.code, error.enhanced, str(error)) from None
    return _trusted(Mail, path, params)


def _rcpt(argument: str, config: ServerConfig) -> Command:
    rest = _prefixed(argument, "TO:", config)
    try:
        path, params_text = parse_forward_path(rest, strict=config.strict)
    except PathError as error:
        raise _Refused(501, "5.1.3", f"bad recipient address syntax: {error}") from None
    try:
        params = parse_rcpt_params(params_text)
    except ParameterError as error:
        raise _Refused(error.code, error.enhanced, str(error)) from None
    return _trusted(Rcpt, path, params)


def _data(argument: str, config: ServerConfig) -> Command:
    _no_argument("DATA", argument, config)
    return _trusted(Data)


def _rset(argument: str, config: ServerConfig) -> Command:
    _no_argument("RSET", argument, config)
    return _trusted(Rset)


def _quit(argument: str, config: ServerConfig) -> Command:
    _no_argument("QUIT", argument, config)
    return _trusted(Quit)


def _noop(argument: str, config: ServerConfig) -> Command:
    return _trusted(Noop, argument)


def _help(argument: str, config: ServerConfig) -> Command:
    return _trusted(Help, argument)


def _vrfy(argument: str, config: ServerConfig) -> Command:
    if not argument.strip(" \t"):
        raise _Refused(501, "5.5.4", "VRFY needs a user name or mailbox")
    return _trusted(Vrfy, argument)


def _expn(argument: str, config: ServerConfig) -> Command:
    if not argument.strip(" \t"):
        raise _Refused(501, "5.5.4", "EXPN needs a mailing list name")
    return _trusted(Expn, argument)


def _lhlo(argument: str, config: ServerConfig) -> Command:
    return _trusted(Lhlo, _parse_hello("LHLO", argument, config))


def _starttls(argument: str, config: ServerConfig) -> Command:
    # RFC 3207 section 4: "STARTTLS" CRLF, no parameters; 501 otherwise.
    _no_argument("STARTTLS", argument, config)
    return _trusted(StartTls)


def _auth(argument: str, config: ServerConfig) -> Command:
    # RFC 4954 section 4: AUTH SP mechanism [SP initial-response]
    words = argument.split(" ")
    if not words[0] or len(words) > 2:
        raise _Refused(501, "5.5.4", "syntax: AUTH mechanism [initial-response]")
    mechanism = words[0].upper()
    if not _MECHANISM.fullmatch(mechanism):
        raise _Refused(504, "5.5.4", "unrecognized authentication mechanism")
    initial: bytes | None = None
    if len(words) == 2:
        if words[1] == "=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(words[1], validate=True)
            except (binascii.Error, ValueError):
                raise _Refused(501, "5.5.2", "initial response is not valid base64") from None
            if not initial:
                raise _Refused(501, "5.5.2", "an empty initial response is sent as '='")
    return _trusted(Auth, mechanism, initial)


class BdatSyntaxError(Exception):
    """A BDAT line whose size cannot be read: the stream cannot be resynchronised."""


def _bdat(argument: str, config: ServerConfig) -> Command:
    if not config.chunking:
        # The size was not read ahead (no CHUNKING): refuse, never raise.
        raise _Refused(502, "5.5.1", "BDAT not offered (no CHUNKING)")
    return parse_bdat(argument)


def parse_bdat(argument: str) -> Bdat:
    """The arguments of a BDAT line (RFC 3030 section 2: "BDAT" SP
    chunk-size [SP end-marker]); BdatSyntaxError when they cannot be read."""
    words = argument.split(" ")
    size_text = words[0]
    if not (size_text.isascii() and size_text.isdigit()) or len(size_text) > 20 or len(words) > 2:
        raise BdatSyntaxError(f"BDAT needs a chunk size of 1 to 20 digits, got {argument!r}")
    if len(words) == 2 and words[1].upper() != "LAST":
        raise BdatSyntaxError(f"BDAT end marker must be LAST, got {words[1]!r}")
    return _trusted(Bdat, int(size_text), len(words) == 2)


def _attributes(verb: str, argument: str) -> tuple[tuple[str, str], ...]:
    # XCLIENT_README / XFORWARD_README: verb 1*( SP attribute-name "=" xtext )
    pairs = []
    seen = set()
    for word in argument.split(" "):
        name, equals, value = word.partition("=")
        name = name.upper()
        if not equals or not _ATTRIBUTE.fullmatch(name) or name in seen:
            raise _Refused(501, "5.5.4", f"syntax: {verb} attribute=value ...")
        seen.add(name)
        try:
            pairs.append((name, xtext_decode(value)))
        except ValueError:
            raise _Refused(501, "5.5.4", f"{verb} {name} value is not valid xtext") from None
    return tuple(pairs)


def _xclient(argument: str, config: ServerConfig) -> Command:
    return _trusted(Xclient, _attributes("XCLIENT", argument))


def _xforward(argument: str, config: ServerConfig) -> Command:
    return _trusted(Xforward, _attributes("XFORWARD", argument))


_VERBS: dict[str, tuple[type, Callable[[str, ServerConfig], Command]]] = {
    "XCLIENT": (Xclient, _xclient),
    "XFORWARD": (Xforward, _xforward),
    "LHLO": (Lhlo, _lhlo),
    "STARTTLS": (StartTls, _starttls),
    "AUTH": (Auth, _auth),
    "BDAT": (Bdat, _bdat),
    "EHLO": (Ehlo, _ehlo),
    "HELO": (Helo, _helo),
    "MAIL": (Mail, _mail),
    "RCPT": (Rcpt, _rcpt),
    "DATA": (Data, _data),
    "RSET": (Rset, _rset),
    "QUIT": (Quit, _quit),
    "NOOP": (Noop, _noop),
    "HELP": (Help, _help),
    "VRFY": (Vrfy, _vrfy),
    "EXPN": (Expn, _expn),
}


def _error(line: bytes, code: int, enhanced: str, text: str) -> CommandError:
    return _trusted(CommandError, line, Reply(code, _short(text), enhanced))


# Recent command lines (with their ending and the strictness they were
# judged by) and what the line alone says: its command type, its verb, and
# what its argument parsed to, a Command or the CommandError it earns. Clients
# send the same few lines again and again ("MAIL FROM:<bounces@...>", "DATA")
# and events are immutable, so each line is read once; whatever depends on
# the session is judged afresh every time. AUTH lines carry credentials and
# BDAT lines are judged by the configuration too: neither is kept. Cleared
# when full, so lines that all differ cost one lookup and never pile up.
_LINES: dict[tuple[bytes, bool, bool], tuple[type | None, str, Command | CommandError]] = {}
_LINES_SIZE = 256
_UNKEPT = (Auth, Bdat)


def _read_line(raw: bytes, crlf: bool, config: ServerConfig) -> tuple[type | None, str, Any]:
    """What a command line says by itself: (None, verb, CommandError) for a
    line refused whatever the state, else its command type, its verb, and
    its parsed Command or the CommandError its argument earns."""
    if not crlf and config.strict:
        return (
            None,
            "",
            _error(raw, 500, "5.5.2", "command line must end with CRLF (RFC 5321 2.3.8)"),
        )
    if raw.translate(None, _CONTROLS) != raw:
        return None, "", _error(raw, 501, "5.5.2", "control character in command line")
    if raw.isascii():
        text = raw.decode("ascii")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "", _error(raw, 501, "5.5.2", "command line is not valid UTF-8")
    verb, _, argument = text.partition(" ")
    # RFC 5321 2.4: verbs are ASCII; str.upper() would fold U+017F into "S".
    verb = verb.upper() if verb.isascii() else verb
    known = _VERBS.get(verb)
    if known is None:
        if verb in _NOT_IMPLEMENTED:
            return None, verb, _error(raw, 502, "5.5.1", f"{verb} not implemented")
        return None, verb, _error(raw, 500, "5.5.1", "command not recognized")
    command_type, parse = known
    try:
        return command_type, verb, parse(argument, config)
    except _Refused as refused:
        return command_type, verb, _trusted(CommandError, raw, refused.reply)


def parse_command(
    line: Line, session: Session, config: ServerConfig, policy: Policy
) -> tuple[Command | CommandError, type | None]:
    """Judge one command line (without its line ending).

    Returns the event and the command type the line was judged as (None when
    the verb is unknown), since a refused AUTH response still ends the
    exchange: the reply to it moves the state like any reply to that type.
    """
    raw = line.data
    key = (raw, line.crlf, config.strict)
    known = _LINES.get(key)
    if known is None:
        known = _read_line(raw, line.crlf, config)
        if known[0] not in _UNKEPT:
            if len(_LINES) >= _LINES_SIZE:
                _LINES.clear()
            _LINES[key] = known
    command_type, verb, command = known
    if command_type is None:
        return command, None
    # What the session says comes first: out of sequence, then too long for
    # the extensions in force, then what the argument itself earned.
    entry = TABLE[session.state].get(command_type)
    if type(entry) is Refusal:
        return _trusted(CommandError, raw, entry.reply()), command_type
    if entry is None:
        return _error(raw, 503, "5.5.1", f"{verb} not allowed now"), command_type
    limit = config.max_command_line
    if command_type is Mail or command_type is Rcpt:
        limit = command_line_limit(command_type, session, limit)
    if len(raw) + 2 > limit:
        return _error(raw, 500, "5.5.2", "command line too long"), command_type
    if isinstance(command, CommandError):
        return command, command_type
    refusal = check_command(command, session, policy)
    if refusal is not None:
        return _trusted(CommandError, raw, refusal.reply()), command_type
    return command, command_type


def parse_auth_response(line: Line) -> tuple[AuthResponse | AuthCancel | CommandError, type]:
    """A line answering a 334: base64, or ``*`` to cancel (RFC 4954 section 4)."""
    raw = line.data
    if raw == b"*":
        return _trusted(AuthCancel), AuthCancel
    try:
        data = base64.b64decode(raw, validate=True) if raw else b""
    except (binascii.Error, ValueError):
        return _error(raw, 501, "5.5.2", "SASL response is not valid base64"), AuthResponse
    return _trusted(AuthResponse, data), AuthResponse


def parse_reply_line(line: Line, strict: bool) -> tuple[int, bool, str]:
    """One reply line: its code, whether it is the last, and its text."""
    raw = line.data
    if not line.crlf and strict:
        raise RemoteProtocolError(f"reply line must end with CRLF, got {raw[:80]!r}")
    # RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39, then SP, "-" or CRLF.
    if (
        len(raw) < 3
        or not (50 <= raw[0] <= 53 and 48 <= raw[1] <= 53 and 48 <= raw[2] <= 57)
        or (len(raw) > 3 and raw[3] not in b" -")
    ):
        raise RemoteProtocolError(
            f"expected a reply line (a code 200-559, then SP, '-' or the end), got {raw[:80]!r}"
        )
    # RFC 5321 4.2: textstring is HT and printable characters; a NUL or a
    # bare CR in a reply is junk at best and an injection at worst. (The
    # translate finds out cheaply whether there is one; the search says which.)
    if raw.translate(None, _REPLY_CONTROLS) != raw:
        control = _REPLY_CONTROL.search(raw)
        assert control is not None
        raise RemoteProtocolError(
            f"control character {control.group()!r} in a reply line: {raw[:80]!r}"
        )
    code = (raw[0] - 48) * 100 + (raw[1] - 48) * 10 + (raw[2] - 48)  # digits, checked above
    last = len(raw) == 3 or raw[3] == 32
    text = raw[4:].decode("utf-8", "surrogateescape")
    return code, last, text

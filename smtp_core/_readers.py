# Bytes to events: command lines (server) and reply lines (client).
#
# A command line is judged in a fixed order, the one Postfix and aiosmtpd use:
# encoding and control characters, then the verb, then whether the command
# may come now (the table), then its syntax, then the rules that depend on
# what is in force (parameters, addresses, limits). The first fault gives the
# CommandError and the suggested reply.
from __future__ import annotations

from collections.abc import Callable

from ._address import Address, PathError, parse_forward_path, parse_reverse_path
from ._config import ServerConfig
from ._events import (
    Command,
    CommandError,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    Vrfy,
    _trusted,
)
from ._parameters import ParameterError, parse_mail_params, parse_rcpt_params
from ._receivebuffer import Line
from ._state import Refusal, Session, check_command, command_line_limit
from ._util import LocalProtocolError, RemoteProtocolError

__all__ = ["parse_command", "parse_reply_line"]

_CONTROLS = bytes(range(32)) + b"\x7f"

# RFC 5321 4.1.1 and 4.1.5: verbs that exist but that this server does not
# carry out (yet); they get 502 rather than 500.
_NOT_IMPLEMENTED = frozenset(
    {"TURN", "SEND", "SOML", "SAML", "ETRN", "ATRN", "BDAT", "STARTTLS", "AUTH", "LHLO"}
)


_MAX_DOMAIN = 255


class _Refused(Exception):
    def __init__(self, code: int, enhanced: str, text: str) -> None:
        self.reply = Reply(code, text, enhanced)


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


_VERBS: dict[str, tuple[type, Callable[[str, ServerConfig], Command]]] = {
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
    return _trusted(CommandError, line, Reply(code, text, enhanced))


def parse_command(line: Line, session: Session, config: ServerConfig) -> Command | CommandError:
    """Judge one command line (without its line ending)."""
    raw = line.data
    if not line.crlf and config.strict:
        return _error(raw, 500, "5.5.2", "command line must end with CRLF (RFC 5321 2.3.8)")
    if raw.translate(None, _CONTROLS) != raw:
        return _error(raw, 501, "5.5.2", "control character in command line")
    if raw.isascii():
        text = raw.decode("ascii")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _error(raw, 501, "5.5.2", "command line is not valid UTF-8")
    verb, _, argument = text.partition(" ")
    verb = verb.upper()
    known = _VERBS.get(verb)
    if known is None:
        if verb in _NOT_IMPLEMENTED:
            return _error(raw, 502, "5.5.1", f"{verb} not implemented")
        return _error(raw, 500, "5.5.1", "command not recognized")
    command_type, parse = known
    entry = session.entry(command_type)
    if isinstance(entry, Refusal):
        return _trusted(CommandError, raw, entry.reply())
    if entry is None:
        return _error(raw, 503, "5.5.1", f"{verb} not allowed now")
    if len(raw) + 2 > command_line_limit(command_type, session, config.max_command_line):
        return _error(raw, 500, "5.5.2", "command line too long")
    try:
        command = parse(argument, config)
    except _Refused as refused:
        return _trusted(CommandError, raw, refused.reply)
    refusal = check_command(
        command,
        session,
        extra_mail=config.extra_mail_parameters,
        extra_rcpt=config.extra_rcpt_parameters,
        max_recipients=config.max_recipients,
    )
    if refusal is not None:
        return _trusted(CommandError, raw, refusal.reply())
    return command


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
    code = int(raw[:3])
    last = len(raw) == 3 or raw[3] == 32
    text = raw[4:].decode("utf-8", "surrogateescape")
    return code, last, text

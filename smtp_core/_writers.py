# Events to bytes: command lines (client) and replies (server).
#
# The events have validated their fields; the final check that no CR, LF or
# NUL reaches a command line stays here anyway, so that no future event type
# or field can open a CRLF injection (a line is all the protocol has).
from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from ._events import (
    Auth,
    AuthCancel,
    AuthResponse,
    Bdat,
    Command,
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
)
from ._parameters import xtext_encode
from ._util import LocalProtocolError

__all__ = ["write_command", "write_reply"]


def _with_argument(verb: str, argument: str) -> str:
    return f"{verb} {argument}" if argument else verb


def _mail(command: Mail) -> str:
    path = "" if command.reverse_path is None else str(command.reverse_path)
    return _with_argument(f"MAIL FROM:<{path}>", str(command.params))


def _rcpt(command: Rcpt) -> str:
    return _with_argument(f"RCPT TO:<{command.forward_path}>", str(command.params))


def _auth(command: Auth) -> str:
    # RFC 4954 section 4: "=" stands for an empty initial response.
    initial = command.initial_response
    if initial is None:
        return f"AUTH {command.mechanism}"
    encoded = base64.b64encode(initial).decode("ascii") if initial else "="
    return f"AUTH {command.mechanism} {encoded}"


def _attributes(verb: str, command: Xclient | Xforward) -> str:
    pairs = " ".join(f"{name}={xtext_encode(value)}" for name, value in command.attributes)
    return f"{verb} {pairs}"


# One entry per command class, looked up by the exact class; a class derived
# from one of them is found by trying each in this order.
_TEXT: dict[type, Callable[[Any], str]] = {
    Mail: _mail,
    Rcpt: _rcpt,
    Ehlo: lambda command: f"EHLO {command.domain}",
    Helo: lambda command: f"HELO {command.domain}",
    Data: lambda command: "DATA",
    Rset: lambda command: "RSET",
    Quit: lambda command: "QUIT",
    Noop: lambda command: _with_argument("NOOP", command.text),
    Help: lambda command: _with_argument("HELP", command.topic),
    Vrfy: lambda command: f"VRFY {command.text}",
    Expn: lambda command: f"EXPN {command.text}",
    Lhlo: lambda command: f"LHLO {command.domain}",
    StartTls: lambda command: "STARTTLS",
    Auth: _auth,
    AuthResponse: lambda command: base64.b64encode(command.data).decode("ascii"),
    AuthCancel: lambda command: "*",
    Xclient: lambda command: _attributes("XCLIENT", command),
    Xforward: lambda command: _attributes("XFORWARD", command),
    Bdat: lambda command: f"BDAT {command.size} LAST" if command.last else f"BDAT {command.size}",
}


def _command_text(command: Command) -> str:
    text_of = _TEXT.get(type(command))
    if text_of is None:
        for kind, text_of_kind in _TEXT.items():
            if isinstance(command, kind):
                return text_of_kind(command)
        raise LocalProtocolError(f"not a command: {command!r}")
    return text_of(command)


def write_command(command: Command) -> bytes:
    """The command line for ``command``, with its CRLF."""
    kind = type(command)
    if kind is not Mail and kind is not Rcpt:
        return _write_command(command)
    # A client sends the same envelope again and again, and commands are
    # immutable: the lines of recent MAIL and RCPT commands are kept. Cleared
    # when full, so envelopes that all differ cost one lookup.
    line = _RECENT_LINES.get(command)
    if line is None:
        line = _write_command(command)
        if len(_RECENT_LINES) >= _RECENT_LINES_SIZE:
            _RECENT_LINES.clear()
        _RECENT_LINES[command] = line
    return line


_RECENT_LINES: dict[Command, bytes] = {}
_RECENT_LINES_SIZE = 256


def _write_command(command: Command) -> bytes:
    text = _command_text(command)
    try:
        line = text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise LocalProtocolError(
            f"a command argument is not encodable as UTF-8 (lone surrogate?): {text!r}"
        ) from error
    # Checked on the text, where it is cheaper: in UTF-8 these octets only
    # ever stand for the characters themselves.
    if "\r" in text or "\n" in text or "\0" in text:
        raise LocalProtocolError(f"CR, LF or NUL in a command argument: {line!r}")
    return line + b"\r\n"


def write_reply(reply: Reply) -> bytes:
    """The reply lines for ``reply``; every line carries the enhanced code."""
    code = str(reply.code)
    enhanced = reply.enhanced
    last = len(reply.lines) - 1
    out = []
    for index, text in enumerate(reply.lines):
        separator = " " if index == last else "-"
        body = (f"{enhanced} {text}" if text else enhanced) if enhanced is not None else text
        if body:
            out.append(f"{code}{separator}{body}\r\n")
        else:
            # RFC 5321 4.2: a code alone ends the reply; "-" alone continues it.
            out.append(f"{code}\r\n" if index == last else f"{code}-\r\n")
    return "".join(out).encode("utf-8", "surrogateescape")

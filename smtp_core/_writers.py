# Events to bytes: command lines (client) and replies (server).
#
# The events have validated their fields; the final check that no CR, LF or
# NUL reaches a command line stays here anyway, so that no future event type
# or field can open a CRLF injection (a line is all the protocol has).
from __future__ import annotations

import base64

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


def _command_text(command: Command) -> str:
    if isinstance(command, Mail):
        path = "" if command.reverse_path is None else str(command.reverse_path)
        return _with_argument(f"MAIL FROM:<{path}>", str(command.params))
    if isinstance(command, Rcpt):
        return _with_argument(f"RCPT TO:<{command.forward_path}>", str(command.params))
    if isinstance(command, Ehlo):
        return f"EHLO {command.domain}"
    if isinstance(command, Helo):
        return f"HELO {command.domain}"
    if isinstance(command, Data):
        return "DATA"
    if isinstance(command, Rset):
        return "RSET"
    if isinstance(command, Quit):
        return "QUIT"
    if isinstance(command, Noop):
        return _with_argument("NOOP", command.text)
    if isinstance(command, Help):
        return _with_argument("HELP", command.topic)
    if isinstance(command, Vrfy):
        return f"VRFY {command.text}"
    if isinstance(command, Expn):
        return f"EXPN {command.text}"
    if isinstance(command, Lhlo):
        return f"LHLO {command.domain}"
    if isinstance(command, StartTls):
        return "STARTTLS"
    if isinstance(command, Auth):
        # RFC 4954 section 4: "=" stands for an empty initial response.
        initial = command.initial_response
        if initial is None:
            return f"AUTH {command.mechanism}"
        encoded = base64.b64encode(initial).decode("ascii") if initial else "="
        return f"AUTH {command.mechanism} {encoded}"
    if isinstance(command, AuthResponse):
        return base64.b64encode(command.data).decode("ascii")
    if isinstance(command, AuthCancel):
        return "*"
    if isinstance(command, (Xclient, Xforward)):
        verb = "XCLIENT" if isinstance(command, Xclient) else "XFORWARD"
        pairs = " ".join(f"{name}={xtext_encode(value)}" for name, value in command.attributes)
        return f"{verb} {pairs}"
    if isinstance(command, Bdat):
        return f"BDAT {command.size} LAST" if command.last else f"BDAT {command.size}"
    raise LocalProtocolError(f"not a command: {command!r}")


def write_command(command: Command) -> bytes:
    """The command line for ``command``, with its CRLF."""
    text = _command_text(command)
    try:
        line = text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise LocalProtocolError(
            f"a command argument is not encodable as UTF-8 (lone surrogate?): {text!r}"
        ) from error
    if b"\r" in line or b"\n" in line or b"\0" in line:
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

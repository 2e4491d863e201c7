# The rules: one role-blind table from (state, command) to what happens.
#
# Both engines consult the same table and the same ``Session``: the server to
# decide whether a command it received must be refused and where a reply it
# sends moves the connection, the client to decide whether it may send a
# command and where a reply it receives moves the connection. State moves on
# the reply, never on the command alone (RFC 5321 4.1.4, RFC 2920 section 3):
# MAIL answered 550 opens no transaction, on either side.
#
# A table entry is a Step (the command is allowed; a reply of its success
# class moves to ``on_success``, a 4yz/5yz reply to ``on_failure``; None
# means "stay") or a Refusal (the reply a server owes that command here).
# Commands without an entry cannot occur in that state at all.
from __future__ import annotations

import enum
from dataclasses import dataclass

from ._events import (
    Command,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    Mail,
    MessageEnd,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    Vrfy,
)
from ._extensions import Extensions

__all__ = ["Greeting", "Refusal", "Session", "State", "Step", "TABLE"]


class State(enum.Enum):
    """Where a connection is, the same for both roles."""

    GREETING = "GREETING"
    """Waiting for the server's greeting."""
    REFUSED = "REFUSED"
    """The greeting refused service (554): only QUIT is accepted (RFC 5321 3.1)."""
    READY = "READY"
    """Greeted; the client has not yet named itself with EHLO or HELO."""
    GREETED = "GREETED"
    """EHLO or HELO was accepted; no mail transaction is open."""
    IN_TRANSACTION = "IN_TRANSACTION"
    """MAIL was accepted; no recipient yet."""
    HAS_RECIPIENTS = "HAS_RECIPIENTS"
    """MAIL and at least one RCPT were accepted."""
    IN_MESSAGE = "IN_MESSAGE"
    """DATA was answered 354: message content flows until CRLF.CRLF."""
    CLOSED = "CLOSED"
    """QUIT was answered, a 421 was sent, or the connection was closed."""

    # Members are singletons: identity hashing is correct and, unlike Enum's
    # name hashing, costs nothing on the per-command table lookups.
    __hash__ = object.__hash__


class Greeting:
    """Stands for the server's greeting in the table: the 'command' a
    connection's first reply answers."""


@dataclass(frozen=True, slots=True)
class Step:
    """An allowed command: which reply class accepts it and where replies lead."""

    success_class: int
    on_success: State | None = None
    on_failure: State | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A command that is refused in this state, and the reply it gets."""

    code: int
    enhanced: str
    text: str

    def reply(self) -> Reply:
        return Reply(self.code, self.text, self.enhanced)


_STAY = Step(2)
_NEED_HELLO = Refusal(503, "5.5.1", "send EHLO or HELO first")
_NEED_MAIL = Refusal(503, "5.5.1", "need MAIL before this command")
_NESTED_MAIL = Refusal(503, "5.5.1", "nested MAIL command: send RSET first")
_NO_RECIPIENTS = Refusal(554, "5.5.1", "no valid recipients")
_ONLY_QUIT = Refusal(503, "5.5.1", "service refused: only QUIT is accepted")

# Commands whose answers never depend on the transaction (RFC 5321 4.1.4:
# NOOP, HELP, EXPN, VRFY and RSET may be used at any time; a new EHLO resets).
_ANYTIME: dict[type, Step | Refusal] = {
    Ehlo: Step(2, State.GREETED),
    Helo: Step(2, State.GREETED),
    Rset: Step(2, State.GREETED),
    Noop: _STAY,
    Vrfy: _STAY,
    Expn: _STAY,
    Help: _STAY,
    Quit: Step(2, State.CLOSED),
}

TABLE: dict[State, dict[type, Step | Refusal]] = {
    State.GREETING: {Greeting: Step(2, State.READY, State.REFUSED)},
    State.REFUSED: {
        **{command: _ONLY_QUIT for command in (*_ANYTIME, Mail, Rcpt, Data)},
        Quit: Step(2, State.CLOSED),
    },
    State.READY: {
        **_ANYTIME,
        Rset: _STAY,
        Mail: _NEED_HELLO,
        Rcpt: _NEED_HELLO,
        Data: _NEED_HELLO,
    },
    State.GREETED: {
        **_ANYTIME,
        Mail: Step(2, State.IN_TRANSACTION),
        Rcpt: _NEED_MAIL,
        Data: _NEED_MAIL,
    },
    State.IN_TRANSACTION: {
        **_ANYTIME,
        Mail: _NESTED_MAIL,
        Rcpt: Step(2, State.HAS_RECIPIENTS),
        Data: _NO_RECIPIENTS,
    },
    State.HAS_RECIPIENTS: {
        **_ANYTIME,
        Mail: _NESTED_MAIL,
        Rcpt: Step(2, State.HAS_RECIPIENTS),
        Data: Step(3, State.IN_MESSAGE),
    },
    # After the end of content the transaction is over whatever the reply.
    State.IN_MESSAGE: {MessageEnd: Step(2, State.GREETED, State.GREETED)},
    State.CLOSED: {},
}

# RFC 2920 section 3.1: these change state in a way the client must see
# before it says anything else, so they end a pipelined group.
GROUP_ENDERS: frozenset[type] = frozenset({Ehlo, Helo, Data, Vrfy, Expn, Noop, Quit, Help})

# The enhanced code the engine adds to a positive reply that has none
# (RFC 3463 section 3.2: X.1.0 concerns the sender, X.1.5 the recipient).
_DEFAULT_SUBJECT: dict[type, str] = {Mail: "1.0", Rcpt: "1.5"}

Answered = Command | MessageEnd | Greeting


@dataclass(slots=True)
class Session:
    """What both sides know of the conversation: the state and what is in force.

    Mutable, owned by one connection. ``apply`` is the only place that moves it.
    """

    state: State = State.GREETING
    extensions: Extensions | None = None
    """What the last accepted EHLO advertised; empty after HELO; None before."""
    mail: Mail | None = None
    """The accepted MAIL of the open transaction."""
    recipients: int = 0
    """Accepted RCPTs in the open transaction."""

    def copy(self) -> Session:
        return Session(self.state, self.extensions, self.mail, self.recipients)

    def entry(self, command_type: type) -> Step | Refusal | None:
        return TABLE[self.state].get(command_type)

    def reply_fault(self, command: Answered, reply: Reply) -> str | None:
        """Why ``reply`` cannot answer ``command`` here, or None when it can."""
        if reply.code == 421:
            return None
        kind = reply.code // 100
        entry = self.entry(type(command))
        name = _name(command)
        if isinstance(entry, Step):
            if kind == entry.success_class or kind in (4, 5):
                if isinstance(command, Quit) and reply.code != 221 and kind == 2:
                    return f"QUIT must be answered 221, not {reply.code} (RFC 5321 4.1.1.10)"
                return None
            expected = f"{entry.success_class}yz, 4yz or 5yz"
            return f"{name} must be answered {expected}, not {reply.code} (RFC 5321 4.3.2)"
        if kind in (4, 5):
            return None
        return f"{name} cannot be accepted in state {self.state.name}, yet got {reply.code}"

    def apply(self, command: Answered, reply: Reply) -> None:
        """Move to where ``reply`` answering ``command`` leads."""
        if reply.code == 421:
            # RFC 5321 3.8: 421 answers anything and the connection ends.
            self.state = State.CLOSED
            return
        entry = self.entry(type(command))
        if not isinstance(entry, Step):
            return
        accepted = reply.code // 100 == entry.success_class
        target = entry.on_success if accepted else entry.on_failure
        if accepted:
            if isinstance(command, Ehlo):
                self.extensions = Extensions.from_lines(reply.lines[1:])
            elif isinstance(command, Helo):
                self.extensions = Extensions()
            if isinstance(command, Mail):
                self.mail = command
            elif isinstance(command, Rcpt):
                self.recipients += 1
        if target is not None:
            if target in (State.GREETED, State.READY):
                self.mail = None
                self.recipients = 0
            self.state = target

    def default_enhanced(self, command: Answered, reply: Reply) -> str | None:
        """The enhanced code to add to a server reply that carries none.

        RFC 2034 section 3: once ENHANCEDSTATUSCODES is in force every reply
        carries one, except the greeting and the replies to EHLO and HELO.
        """
        if (
            reply.enhanced is not None
            or self.extensions is None
            or not self.extensions.enhanced_status_codes
            or isinstance(command, (Greeting, Ehlo, Helo))
            or 300 <= reply.code < 400
        ):
            return None
        if reply.code < 300:
            return "2." + _DEFAULT_SUBJECT.get(type(command), "0.0")
        return f"{reply.code // 100}.0.0"


def _name(command: Answered) -> str:
    if isinstance(command, Greeting):
        return "the greeting"
    if isinstance(command, MessageEnd):
        return "the end of the message"
    return type(command).__name__.upper()


# Parameters and the extension that must be in force for each (RFC 1870,
# RFC 6152, RFC 3030, RFC 6531, RFC 3461).
_MAIL_PARAMETER_EXTENSION = {
    "SIZE": "SIZE",
    "SMTPUTF8": "SMTPUTF8",
    "RET": "DSN",
    "ENVID": "DSN",
}
_RCPT_PARAMETER_EXTENSION = {"NOTIFY": "DSN", "ORCPT": "DSN"}
_BODY_EXTENSION = {"7BIT": None, "8BITMIME": "8BITMIME", "BINARYMIME": "BINARYMIME"}


def command_line_limit(command_type: type, session: Session, base: int) -> int:
    """Octets a command line may have with its CRLF.

    RFC 1870 section 4 (+26 for SIZE), RFC 6531 section 3.4 (+10 for
    SMTPUTF8) and RFC 3461 section 5 (+100 on MAIL, +500 on RCPT for DSN)
    raise the base of RFC 5321 4.5.3.1.4 while those extensions are in force.
    """
    extensions = session.extensions
    if extensions is None or command_type not in (Mail, Rcpt):
        return base
    if command_type is Mail:
        return base + 26 * extensions.size + 10 * extensions.smtputf8 + 100 * extensions.dsn
    return base + 10 * extensions.smtputf8 + 500 * extensions.dsn


def check_command(
    command: Command,
    session: Session,
    *,
    extra_mail: frozenset[str] | None,
    extra_rcpt: frozenset[str] | None,
    max_recipients: int | None,
) -> Refusal | None:
    """The refusal ``command`` gets now, or None when it may go ahead.

    The server calls this on what it received, the client on what it is
    about to send (with the state its pending commands would lead to), so
    both sides refuse the same things. ``extra_*`` are the unknown parameter
    keywords allowed (None: any, which is the client's view, as only the
    server knows what it handles); ``max_recipients`` is the server's limit.
    """
    entry = session.entry(type(command))
    if entry is None:
        return Refusal(503, "5.5.1", f"{_name(command)} not allowed in state {session.state.name}")
    if isinstance(entry, Refusal):
        return entry
    extensions = session.extensions or Extensions()
    if isinstance(command, Mail):
        params = command.params
        for keyword in params.keywords():
            needed = _MAIL_PARAMETER_EXTENSION.get(keyword)
            if keyword == "BODY":
                assert params.body is not None
                needed = _BODY_EXTENSION[params.body.value]
            elif needed is None and keyword not in _MAIL_PARAMETER_EXTENSION:
                if extra_mail is None or keyword in extra_mail:
                    continue
                return Refusal(555, "5.5.4", f"MAIL parameter {keyword} not recognized")
            if needed is not None and needed not in extensions:
                return Refusal(555, "5.5.4", f"MAIL parameter {keyword} needs {needed}")
        # RFC 1870 section 6.2: a declared size over the fixed maximum gets 552.
        limit = extensions.max_size
        if params.size is not None and limit is not None and params.size > limit:
            return Refusal(552, "5.3.4", f"message size exceeds the fixed maximum of {limit}")
        # RFC 6531 section 3.4: UTF-8 addresses only with the SMTPUTF8 parameter.
        path = command.reverse_path
        if path is not None and not path.is_ascii and not params.smtputf8:
            return Refusal(553, "5.6.7", "non-ASCII sender address needs SMTPUTF8")
    elif isinstance(command, Rcpt):
        params_r = command.params
        for keyword in params_r.keywords():
            needed = _RCPT_PARAMETER_EXTENSION.get(keyword)
            if needed is None:
                if extra_rcpt is None or keyword in extra_rcpt:
                    continue
                return Refusal(555, "5.5.4", f"RCPT parameter {keyword} not recognized")
            if needed not in extensions:
                return Refusal(555, "5.5.4", f"RCPT parameter {keyword} needs {needed}")
        if not command.forward_path.is_ascii and not (
            session.mail is not None and session.mail.params.smtputf8
        ):
            return Refusal(553, "5.6.7", "non-ASCII recipient address needs SMTPUTF8 on MAIL")
        # RFC 5321 4.5.3.1.10: too many recipients gets 452, a transient reply.
        if max_recipients is not None and session.recipients >= max_recipients:
            return Refusal(452, "4.5.3", "too many recipients")
    return None

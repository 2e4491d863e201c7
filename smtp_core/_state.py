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
    MessageEnd,
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
from ._extensions import Extensions
from ._parameters import _NO_MAIL_PARAMS, _NO_RCPT_PARAMS

__all__ = ["TABLE", "Greeting", "Policy", "Refusal", "Session", "State", "Step"]


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
    IN_CHUNKING = "IN_CHUNKING"
    """A BDAT without LAST was accepted: more chunks follow (RFC 3030)."""
    CHUNKING_FAILED = "CHUNKING_FAILED"
    """A BDAT was refused: the transaction can only be reset (RFC 3030 section 2)."""
    AUTH_EXCHANGE = "AUTH_EXCHANGE"
    """AUTH was answered 334: the client's next line is a SASL response (RFC 4954)."""
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    """STARTTLS was answered 220: nothing is read until the handshake is done
    and ``tls_started()`` is called (RFC 3207 section 4.2)."""
    CLOSED = "CLOSED"
    """QUIT was answered, a 421 was sent, or the connection was closed."""

    # Members are singletons: identity hashing is correct and, unlike Enum's
    # name hashing, costs nothing on the per-command table lookups.
    __hash__ = object.__hash__


# The members as plain names for the code that runs on every command: on
# Python 3.11 the Enum metaclass has a __getattr__, which sends every
# ``State.X`` lookup through a slow hook (about four times a global name).
GREETING = State.GREETING
READY = State.READY
GREETED = State.GREETED
IN_MESSAGE = State.IN_MESSAGE
AUTH_EXCHANGE = State.AUTH_EXCHANGE
TLS_HANDSHAKE = State.TLS_HANDSHAKE
CLOSED = State.CLOSED


class Greeting:
    """Stands for the server's greeting in the table: the 'command' a
    connection's first reply answers."""


@dataclass(frozen=True, slots=True)
class Step:
    """An allowed command: which reply class accepts it and where replies lead."""

    success_class: int
    """First digit of a reply that accepts it: 2, 3 for DATA, 0 for none."""
    on_success: State | None = None
    on_failure: State | None = None
    on_intermediate: State | None = None
    """Where a 3yz leads when it is not the success class (334 to AUTH)."""


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
_NOT_IN_TRANSACTION = Refusal(503, "5.5.1", "not allowed in a mail transaction: send RSET first")
_CHUNKING_OPEN = Refusal(503, "5.5.1", "BDAT transfer in progress: send BDAT LAST or RSET")
_CHUNKING_FAILED = Refusal(503, "5.5.1", "an earlier BDAT failed: send RSET")

# Commands whose answers never depend on the transaction (RFC 5321 4.1.4:
# NOOP, HELP, EXPN, VRFY and RSET may be used at any time; a new EHLO resets).
_ANYTIME: dict[type, Step | Refusal] = {
    Ehlo: Step(2, State.GREETED),
    Helo: Step(2, State.GREETED),
    Lhlo: Step(2, State.GREETED),
    Rset: Step(2, State.GREETED),
    Noop: _STAY,
    Vrfy: _STAY,
    Expn: _STAY,
    Help: _STAY,
    Quit: Step(2, State.CLOSED),
}
# What may not come inside a transaction (RFC 3207 section 4, RFC 4954 section 4).
_SESSION_ONLY: dict[type, Step | Refusal] = {
    StartTls: _NOT_IN_TRANSACTION,
    Auth: _NOT_IN_TRANSACTION,
    Xclient: _NOT_IN_TRANSACTION,
    Xforward: _NOT_IN_TRANSACTION,
}
# Postfix XCLIENT_README: a successful XCLIENT is answered with a new 220
# greeting and the session starts over (READY: EHLO is needed again).
_XCLIENT = Step(2, State.READY)
# A BDAT without LAST moves to IN_CHUNKING, with LAST back to GREETED (see
# Session.apply); a refused BDAT leaves only RSET (RFC 3030 section 2).
_BDAT = Step(2, State.IN_CHUNKING, State.CHUNKING_FAILED)

TABLE: dict[State, dict[type, Step | Refusal]] = {
    State.GREETING: {Greeting: Step(2, State.READY, State.REFUSED)},
    State.REFUSED: {
        **{command: _ONLY_QUIT for command in (*_ANYTIME, *_SESSION_ONLY, Mail, Rcpt, Data, Bdat)},
        Quit: Step(2, State.CLOSED),
    },
    State.READY: {
        **_ANYTIME,
        Rset: _STAY,
        Mail: _NEED_HELLO,
        Rcpt: _NEED_HELLO,
        Data: _NEED_HELLO,
        Bdat: _NEED_HELLO,
        StartTls: _NEED_HELLO,
        Auth: _NEED_HELLO,
        Xclient: _XCLIENT,
        Xforward: _NEED_HELLO,
    },
    State.GREETED: {
        **_ANYTIME,
        Mail: Step(2, State.IN_TRANSACTION),
        Rcpt: _NEED_MAIL,
        Data: _NEED_MAIL,
        Bdat: _NEED_MAIL,
        StartTls: Step(2, State.TLS_HANDSHAKE),
        Auth: Step(2, on_intermediate=State.AUTH_EXCHANGE),
        Xclient: _XCLIENT,
        Xforward: _STAY,
    },
    State.IN_TRANSACTION: {
        **_ANYTIME,
        **_SESSION_ONLY,
        Mail: _NESTED_MAIL,
        Rcpt: Step(2, State.HAS_RECIPIENTS),
        Data: _NO_RECIPIENTS,
        Bdat: _NO_RECIPIENTS,
    },
    State.HAS_RECIPIENTS: {
        **_ANYTIME,
        **_SESSION_ONLY,
        Mail: _NESTED_MAIL,
        Rcpt: Step(2, State.HAS_RECIPIENTS),
        Data: Step(3, State.IN_MESSAGE),
        Bdat: _BDAT,
    },
    # After the end of content the transaction is over whatever the reply.
    State.IN_MESSAGE: {MessageEnd: Step(2, State.GREETED, State.GREETED)},
    # RFC 3030 section 2: no DATA, MAIL or RCPT between BDAT chunks.
    State.IN_CHUNKING: {
        **_ANYTIME,
        **_SESSION_ONLY,
        Mail: _CHUNKING_OPEN,
        Rcpt: _CHUNKING_OPEN,
        Data: _CHUNKING_OPEN,
        Bdat: _BDAT,
    },
    State.CHUNKING_FAILED: {
        **_ANYTIME,
        **_SESSION_ONLY,
        Mail: _CHUNKING_FAILED,
        Rcpt: _CHUNKING_FAILED,
        Data: _CHUNKING_FAILED,
        Bdat: _CHUNKING_FAILED,
    },
    # RFC 4954 section 4: each 334 gets one response line, or "*" to cancel,
    # which the server must answer 501.
    State.AUTH_EXCHANGE: {
        AuthResponse: Step(2, State.GREETED, State.GREETED, State.AUTH_EXCHANGE),
        AuthCancel: Step(0, on_failure=State.GREETED),
    },
    State.TLS_HANDSHAKE: {},
    State.CLOSED: {},
}

# RFC 2920 section 3.1: these change state in a way the client must see
# before it says anything else, so they end a pipelined group; so do
# STARTTLS (RFC 3207 section 4.2) and AUTH and its responses (RFC 4954 4).
GROUP_ENDERS: frozenset[type] = frozenset(
    {
        Ehlo,
        Helo,
        Lhlo,
        Data,
        Vrfy,
        Expn,
        Noop,
        Quit,
        Help,
        StartTls,
        Auth,
        AuthResponse,
        AuthCancel,
        Xclient,
    }
)

# The enhanced code the engine adds to a positive reply that has none
# (RFC 3463 section 3.2: X.1.0 concerns the sender, X.1.5 the recipient).
_DEFAULT_SUCCESS: dict[type, str] = {
    Mail: "2.1.0",
    Rcpt: "2.1.5",
    Auth: "2.7.0",
    AuthResponse: "2.7.0",
}
# The greeting and the replies to EHLO, HELO and LHLO carry none (RFC 2034
# section 3); XCLIENT's answer is a new greeting.
_NO_DEFAULT_ENHANCED = frozenset({Greeting, Ehlo, Helo, Lhlo, Xclient})

# Replies whose meaning has one enhanced code (RFC 4954 section 6, RFC 3207).
_DEFAULT_BY_CODE: dict[int, str] = {
    454: "4.7.0",  # temporary authentication failure / TLS not available
    530: "5.7.0",  # must issue STARTTLS first / authentication required
    534: "5.7.9",  # authentication mechanism is too weak
    535: "5.7.8",  # authentication credentials invalid
    538: "5.7.11",  # encryption required for requested authentication mechanism
}

Answered = Command | MessageEnd | Greeting


@dataclass(slots=True)
class Session:
    """What both sides know of the conversation: the state and what is in force.

    Mutable, owned by one connection. ``apply`` is the only place that moves it.
    """

    state: State = GREETING
    extensions: Extensions | None = None
    """What the last accepted EHLO advertised; empty after HELO; None before."""
    mail: Mail | None = None
    """The accepted MAIL of the open transaction."""
    recipients: tuple[Rcpt, ...] = ()
    """The accepted RCPTs of the open transaction, in order."""
    tls: bool = False
    """The connection is under TLS (after STARTTLS, or implicit TLS)."""
    authenticated: bool = False
    """An AUTH exchange succeeded (RFC 4954: a second AUTH gets 503)."""
    lmtp: bool = False
    """LMTP (RFC 2033): one reply per accepted recipient after the content."""

    def copy(self) -> Session:
        return Session(
            self.state,
            self.extensions,
            self.mail,
            self.recipients,
            self.tls,
            self.authenticated,
            self.lmtp,
        )

    def tls_started(self) -> None:
        """The TLS handshake is done: RFC 3207 section 4.2 has both sides
        forget everything learnt before it; the client must send EHLO again."""
        self.state = READY
        self.extensions = None
        self.mail = None
        self.recipients = ()
        self.authenticated = False
        self.tls = True

    def per_recipient(self, command: Answered) -> bool:
        """Whether ``command`` is answered once per accepted recipient: the
        end of content in LMTP (RFC 2033 4.2), when it may come now (a BDAT
        LAST after a failed chunk is refused once, as any command)."""
        return (
            self.lmtp
            and bool(self.recipients)
            and (type(command) is MessageEnd or (type(command) is Bdat and command.last))
            and type(TABLE[self.state].get(type(command))) is Step
        )

    def replies_owed(self, command: Answered) -> int:
        """How many replies ``command`` gets: one, except the end of content
        in LMTP, which gets one per accepted recipient (RFC 2033 4.2)."""
        return len(self.recipients) if self.per_recipient(command) else 1

    def reply_fault(self, command: Answered, reply: Reply) -> str | None:
        """Why ``reply`` cannot answer ``command`` here, or None when it can."""
        if reply.code == 421:
            return None
        kind = reply.code // 100
        entry = TABLE[self.state].get(type(command))
        if type(entry) is Step:
            if kind == 3 and entry.on_intermediate is not None:
                return None
            if kind == entry.success_class or kind == 4 or kind == 5:
                if kind == 2 and reply.code != 221 and type(command) is Quit:
                    return f"QUIT must be answered 221, not {reply.code} (RFC 5321 4.1.1.10)"
                return None
            expected = (
                f"{entry.success_class}yz, 4yz or 5yz" if entry.success_class else "4yz or 5yz"
            )
            return (
                f"{_name(command)} must be answered {expected}, not {reply.code} (RFC 5321 4.3.2)"
            )
        if kind == 4 or kind == 5:
            return None
        return (
            f"{_name(command)} cannot be accepted in state {self.state.name}, yet got {reply.code}"
        )

    def apply(self, command: Answered, reply: Reply) -> None:
        """Move to where ``reply`` answering ``command`` leads."""
        code = reply.code
        if code == 421:
            # RFC 5321 3.8: 421 answers anything and the connection ends.
            self.state = CLOSED
            return
        command_type = type(command)
        moved = outcome(self.state, command_type, code)
        if moved is None:
            return
        target, accepted = moved
        if accepted:
            if command_type is Ehlo or command_type is Lhlo:
                self.extensions = _extensions_in(reply.lines[1:])
            elif command_type is Helo:
                self.extensions = Extensions()
            elif command_type is Auth or command_type is AuthResponse:
                self.authenticated = True
            elif command_type is Xclient:
                # The session starts over as if the real client had connected.
                self.extensions = None
                self.authenticated = False
        if command_type is Bdat and command.last:  # type: ignore[union-attr]
            target = GREETED  # RFC 3030 section 2: LAST ends the transaction
        self.advance(command, target, accepted)

    def advance(self, command: Answered, target: State | None, accepted: bool) -> None:
        """Keep an accepted MAIL or RCPT and move to ``target`` (None: stay);
        the part of ``apply`` every reply to a plain command needs."""
        if accepted:
            command_type = type(command)
            if command_type is Mail:
                self.mail = command  # type: ignore[assignment]
            elif command_type is Rcpt:
                self.recipients += (command,)  # type: ignore[operator]
        if target is not None:
            if target is GREETED or target is READY:
                self.mail = None
                self.recipients = ()
            self.state = target

    def default_enhanced(self, command: Answered, reply: Reply) -> str | None:
        """The enhanced code to add to a server reply that carries none.

        RFC 2034 section 3: once ENHANCEDSTATUSCODES is in force every reply
        carries one, except the greeting and the replies to EHLO and HELO.
        """
        extensions = self.extensions
        code = reply.code
        if (
            reply.enhanced is not None
            or extensions is None
            or not extensions.enhanced_status_codes
            or 300 <= code < 400
            or type(command) in _NO_DEFAULT_ENHANCED
        ):
            return None
        if code < 300:
            return _DEFAULT_SUCCESS.get(type(command), "2.0.0")
        return _DEFAULT_BY_CODE.get(code, f"{code // 100}.0.0")


def outcome(state: State, command_type: type, code: int) -> tuple[State | None, bool] | None:
    """Where a reply ``code`` (not 421) to a ``command_type`` leads from
    ``state`` (None: it stays) and whether it accepted the command; None
    when the command is not allowed there, so no reply to it moves anything."""
    entry = TABLE[state].get(command_type)
    if type(entry) is not Step:
        return None
    kind = code // 100
    accepted = kind == entry.success_class
    if kind == 3 and entry.on_intermediate is not None:
        return entry.on_intermediate, accepted
    return (entry.on_success if accepted else entry.on_failure), accepted


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
    "AUTH": "AUTH",  # RFC 4954 section 5
    "REQUIRETLS": "REQUIRETLS",  # RFC 8689 section 4.1
    "MT-PRIORITY": "MT-PRIORITY",  # RFC 6710
    "BY": "DELIVERBY",  # RFC 2852: the keyword differs from the parameter
}
_RCPT_PARAMETER_EXTENSION = {"NOTIFY": "DSN", "ORCPT": "DSN", "RRVS": "RRVS"}
_BODY_EXTENSION = {"7BIT": None, "8BITMIME": "8BITMIME", "BINARYMIME": "BINARYMIME"}


def command_line_limit(command_type: type, session: Session, base: int) -> int:
    """Octets a command line may have with its CRLF.

    RFC 1870 section 4 (+26 for SIZE), RFC 6531 section 3.4 (+10 for
    SMTPUTF8) and RFC 3461 section 5 (+100 on MAIL, +500 on RCPT for DSN)
    raise the base of RFC 5321 4.5.3.1.4 while those extensions are in force.
    """
    extensions = session.extensions
    if extensions is None:
        return base
    # Worked out with the extensions (RFC 4954 section 5: AUTH= may add up
    # to 500 octets to MAIL): [0] for MAIL, [1] for RCPT.
    if command_type is Mail:
        return base + extensions._line_extra[0]
    if command_type is Rcpt:
        return base + extensions._line_extra[1]
    return base


@dataclass(frozen=True, slots=True)
class Policy:
    """The side-specific inputs to the shared rules.

    The client leaves the server-only ones at their defaults: it cannot know
    which unknown parameters the server handles or how many recipients it
    takes, so it lets the server judge those.
    """

    extra_mail: frozenset[str] | None = None
    """Unknown MAIL parameter keywords allowed; None: any."""
    extra_rcpt: frozenset[str] | None = None
    """Unknown RCPT parameter keywords allowed; None: any."""
    max_recipients: int | None = None
    require_tls: bool = False
    """MAIL, RCPT, DATA, BDAT and AUTH only under TLS (RFC 3207 section 4)."""
    auth_requires_tls: bool = False
    """PLAIN and LOGIN only under TLS (RFC 4954 section 4, 538 5.7.11)."""


# What recent EHLO replies advertised, by their lines: a server sends the
# same reply to every client, and a client often meets the same servers, so
# each is parsed once. Only short replies are kept, and the whole is cleared
# when full, so memory stays small whatever peers send.
_EXTENSIONS_IN: dict[tuple[str, ...], Extensions] = {}
_EXTENSIONS_IN_SIZE = 64
_EXTENSIONS_KEPT_LINES = 40


def _extensions_in(lines: tuple[str, ...]) -> Extensions:
    """``Extensions.from_lines(lines)``, remembered for short replies."""
    extensions = _EXTENSIONS_IN.get(lines)
    if extensions is None:
        extensions = Extensions.from_lines(lines)
        if len(lines) <= _EXTENSIONS_KEPT_LINES:
            if len(_EXTENSIONS_IN) >= _EXTENSIONS_IN_SIZE:
                _EXTENSIONS_IN.clear()
            _EXTENSIONS_IN[lines] = extensions
    return extensions


_CLIENT_POLICY = Policy()
_NO_EXTENSIONS = Extensions()
_NEEDS_TLS = frozenset({Mail, Rcpt, Data, Bdat, Auth})
# Commands the state table alone judges (exactly these types: a subclass
# still takes the checks below).
_NOTHING_MORE = frozenset({Ehlo, Helo, Lhlo, Quit, Noop, Rset, Help, Vrfy, Expn})
_PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


def check_command(command: Command, session: Session, policy: Policy) -> Refusal | None:
    """The refusal ``command`` gets now, or None when it may go ahead.

    The server calls this on what it received, the client on what it is
    about to send (with the state its pending commands would lead to), so
    both sides refuse the same things.
    """
    kind = type(command)
    # RFC 2033 section 4.1: LMTP has LHLO and no HELO or EHLO.
    if session.lmtp:
        if kind is Ehlo or kind is Helo:
            return Refusal(500, "5.5.1", "this is LMTP: use LHLO (RFC 2033)")
    elif kind is Lhlo:
        return Refusal(500, "5.5.1", "command not recognized")
    entry = TABLE[session.state].get(kind)
    if entry is None:
        return Refusal(503, "5.5.1", f"{_name(command)} not allowed in state {session.state.name}")
    if type(entry) is Refusal:
        return entry
    if policy.require_tls and not session.tls and kind in _NEEDS_TLS:
        return Refusal(530, "5.7.0", "must issue a STARTTLS command first")
    if kind in _NOTHING_MORE:
        return None
    extensions = session.extensions or _NO_EXTENSIONS
    if kind is Data:
        mail = session.mail
        if (
            mail is not None
            and mail.params.body is not None
            and mail.params.body.value == "BINARYMIME"
        ):
            return Refusal(503, "5.5.1", "BODY=BINARYMIME needs BDAT (RFC 3030 section 3)")
        return None
    # MAIL and RCPT, the commands of every transaction, by their exact type
    # first; the chain below still takes any other (or derived) command.
    if type(command) is Mail:
        return _check_mail(command, session, extensions, policy)
    if type(command) is Rcpt:
        return _check_rcpt(command, session, extensions, policy)
    if isinstance(command, StartTls):
        if session.tls:
            return Refusal(554, "5.5.1", "TLS is already active")
        if not extensions.starttls:
            return Refusal(502, "5.5.1", "STARTTLS not offered")
    elif isinstance(command, Auth):
        if session.authenticated:
            return Refusal(503, "5.5.1", "already authenticated")
        if "AUTH" not in extensions:
            return Refusal(502, "5.5.1", "AUTH not offered")
        mechanism = command.mechanism
        if policy.auth_requires_tls and not session.tls and mechanism in _PLAINTEXT_MECHANISMS:
            return Refusal(538, "5.7.11", f"{mechanism} requires TLS")
        if mechanism not in extensions.auth_mechanisms:
            return Refusal(504, "5.5.4", f"unrecognized authentication mechanism {mechanism}")
    elif isinstance(command, (Xclient, Xforward)):
        keyword = "XCLIENT" if isinstance(command, Xclient) else "XFORWARD"
        offered = extensions.params(keyword)
        if offered is None:
            return Refusal(502, "5.5.1", f"{keyword} not offered")
        for name, _ in command.attributes:
            if name not in offered:
                return Refusal(501, "5.5.4", f"{keyword} attribute {name} not supported")
    elif isinstance(command, Bdat) and not extensions.chunking:
        return Refusal(502, "5.5.1", "BDAT not offered (no CHUNKING)")
    if isinstance(command, Mail):
        return _check_mail(command, session, extensions, policy)
    if isinstance(command, Rcpt):
        return _check_rcpt(command, session, extensions, policy)
    return None


def _check_mail(
    command: Mail, session: Session, extensions: Extensions, policy: Policy
) -> Refusal | None:
    params = command.params
    # Most MAILs carry no parameters: the parser shares one empty set for them.
    for keyword in params.keywords() if params is not _NO_MAIL_PARAMS else ():
        needed = _MAIL_PARAMETER_EXTENSION.get(keyword)
        if keyword == "BODY":
            assert params.body is not None
            needed = _BODY_EXTENSION[params.body.value]
        elif needed is None and keyword not in _MAIL_PARAMETER_EXTENSION:
            if policy.extra_mail is None or keyword in policy.extra_mail:
                continue
            return Refusal(555, "5.5.4", f"MAIL parameter {keyword} not recognized")
        if needed is not None and needed not in extensions:
            return Refusal(555, "5.5.4", f"MAIL parameter {keyword} needs {needed}")
    # RFC 1870 section 6.2: a declared size over the fixed maximum gets 552.
    if params.size is not None:
        limit = extensions.max_size
        if limit is not None and params.size > limit:
            return Refusal(552, "5.3.4", f"message size exceeds the fixed maximum of {limit}")
    # RFC 6531 section 3.4: UTF-8 addresses only with the SMTPUTF8 parameter.
    path = command.reverse_path
    if path is not None and not path.is_ascii and not params.smtputf8:
        return Refusal(553, "5.6.7", "non-ASCII sender address needs SMTPUTF8")
    return None


def _check_rcpt(
    command: Rcpt, session: Session, extensions: Extensions, policy: Policy
) -> Refusal | None:
    params = command.params
    for keyword in params.keywords() if params is not _NO_RCPT_PARAMS else ():
        needed = _RCPT_PARAMETER_EXTENSION.get(keyword)
        if needed is None:
            if policy.extra_rcpt is None or keyword in policy.extra_rcpt:
                continue
            return Refusal(555, "5.5.4", f"RCPT parameter {keyword} not recognized")
        if needed not in extensions:
            return Refusal(555, "5.5.4", f"RCPT parameter {keyword} needs {needed}")
    if not command.forward_path.is_ascii and not (
        session.mail is not None and session.mail.params.smtputf8
    ):
        return Refusal(553, "5.6.7", "non-ASCII recipient address needs SMTPUTF8 on MAIL")
    # RFC 5321 4.5.3.1.10: too many recipients gets 452, a transient reply.
    limit = policy.max_recipients
    if limit is not None and len(session.recipients) >= limit:
        return Refusal(452, "4.5.3", "too many recipients")
    return None

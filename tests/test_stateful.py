"""A ClientConnection and a ServerConnection back to back, under a hypothesis
rule-based state machine.

Each step is one move, drawn with weights among those that make sense now:
the client sends a command (alone, or as a pipelined group delivered in one
read or byte by byte), any event at all (legal or not), DATA content or BDAT
chunks of arbitrary bytes, or an AUTH exchange with a mechanism of
``smtp_core.sasl``; the server application replies (accepting, refusing,
oddly, or 421), finishes a STARTTLS handshake; garbage is typed into the
server; a side hangs up, or someone calls what is not allowed now. A model
written here from the RFCs, not from the engine, predicts every outcome:

- whether the client may send an event now (RFC 5321 3.3, 4.1.4 and 4.3.2
  sequencing; RFC 2920 section 3.1 groups; RFC 3030 section 2 chunks; RFC
  3207 section 4; RFC 4954 section 4); when it may not, ``send`` must raise
  LocalProtocolError and change nothing;
- what the server hands out for each line: the command itself, or a
  CommandError carrying the reply code RFC 5321 4.3.2 gives it;
- whether the server application may send a reply (RFC 5321 4.2, 4.3.2,
  and 3.8 for 421); when it may not, ``send`` must raise LocalProtocolError
  and change nothing;
- where each reply moves the conversation (RFC 5321 4.1.4: the state moves
  on the reply, never on the command alone).

After every step both engines and the model must agree on the state, the
transaction, the extensions in force, TLS and authentication; every command
the server hands out is the one the client sent, every Reply the client
hands out is the one the server sent, paired with the command it answers,
and message content arrives byte-identical.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections import deque
from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from strategies import addresses

from smtp_core import (
    NEED_DATA,
    PAUSED,
    Address,
    Auth,
    AuthCancel,
    AuthResponse,
    BareLinePolicy,
    Bdat,
    Body,
    ClientConfig,
    ClientConnection,
    CommandError,
    ConnectionClosed,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    Lhlo,
    LocalProtocolError,
    Mail,
    MailParams,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    Noop,
    Notify,
    Quit,
    Rcpt,
    RcptParams,
    Reply,
    Rset,
    ServerConfig,
    ServerConnection,
    StartTls,
    State,
    Vrfy,
    sasl,
)

# --- the model: what RFC 5321 and its extensions say, written out again ---------------


class _Greeting:
    """The server's greeting, in the model's queue of what awaits a reply."""

    def __repr__(self) -> str:
        return "GREETING"


GREETING = _Greeting()

HELLOS = (Ehlo, Helo, Lhlo)
# RFC 5321 4.1.4: these may come at any time once the client is greeted.
ANYTIME = (*HELLOS, Rset, Noop, Vrfy, Expn, Help, Quit)
# RFC 2920 section 3.1 (and RFC 3030 section 2 for BDAT): the only commands a
# pipelined group may go on after; every other command ends the group.
PIPELINABLE = (Mail, Rcpt, Rset, Bdat, MessageEnd)
# RFC 3207 section 4: what a server that requires TLS refuses before it.
NEED_TLS = (Mail, Rcpt, Data, Bdat, Auth)
COMMANDS = (
    Ehlo,
    Helo,
    Lhlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Vrfy,
    Expn,
    Help,
    Noop,
    Quit,
    StartTls,
    Auth,
    AuthResponse,
    AuthCancel,
)
TRANSACTION_STATES = (
    State.GREETED,
    State.IN_TRANSACTION,
    State.HAS_RECIPIENTS,
    State.IN_CHUNKING,
    State.CHUNKING_FAILED,
)
# RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
MAX_COMMAND_LINE = 512
# Where the server may take garbage without the client noticing.
GARBAGE_STATES = (State.REFUSED, State.READY, *TRANSACTION_STATES)
# Where a client has something it would naturally send (the script).
SCRIPTED_STATES = (
    State.REFUSED,
    State.READY,
    *TRANSACTION_STATES,
    State.IN_MESSAGE,
    State.AUTH_EXCHANGE,
)


@dataclass
class Conversation:
    """Where the conversation is, as both sides must see it."""

    state: State = State.GREETING
    extensions: dict[str, tuple[str, ...]] | None = None
    mail: Mail | None = None
    recipients: tuple[Rcpt, ...] = ()
    tls: bool = False
    authenticated: bool = False

    def copy(self) -> Conversation:
        return replace(self)

    def end_transaction(self, state: State) -> None:
        self.state = state
        self.mail = None
        self.recipients = ()


@dataclass(frozen=True)
class Rules:
    """The side-specific inputs: the server knows its own limits and
    policies, the client only its own."""

    lmtp: bool
    require_tls: bool = False
    auth_requires_tls: bool = False
    max_recipients: int | None = None


def parse_extensions(lines: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The extensions the lines after the first of an EHLO reply advertise
    (RFC 5321 4.1.1.1: ehlo-keyword *(SP ehlo-param))."""
    found: dict[str, tuple[str, ...]] = {}
    for line in lines:
        keyword, *params = line.split(" ")
        found.setdefault(keyword.upper(), tuple(params))
    return found


def max_size(offered: dict[str, tuple[str, ...]]) -> int | None:
    """RFC 1870 section 4: SIZE's fixed maximum; none, or 0, means no limit."""
    params = offered.get("SIZE") or ()
    if params and params[0].isdigit():
        return int(params[0]) or None
    return None


def is_ascii(address: Address) -> bool:
    return str(address).isascii()


def sequence_refusal(state: State, kind: type) -> int | None:
    """The code a command gets in ``state`` by sequence alone, or None.

    RFC 5321 3.1 (after a 554 greeting only QUIT), 4.1.4 (EHLO first; MAIL,
    RCPT, DATA in order; RSET, NOOP, VRFY, EXPN, HELP at any time), 3.3 (DATA
    without a valid recipient gets 554), RFC 3030 section 2 (nothing but BDAT
    between chunks, only RSET after a failed chunk), RFC 3207 section 4 and
    RFC 4954 section 4 (no STARTTLS or AUTH inside a transaction).
    """
    if state is State.REFUSED:
        return None if kind is Quit else 503
    if state is State.AUTH_EXCHANGE:
        return None if kind in (AuthResponse, AuthCancel) else 503
    if kind in (AuthResponse, AuthCancel):
        return 503
    if state is State.READY:
        return None if kind in ANYTIME else 503
    if kind in ANYTIME:
        return None if state in TRANSACTION_STATES else 503
    if state is State.GREETED:
        return 503 if kind in (Rcpt, Data, Bdat) else None
    if state is State.IN_TRANSACTION:
        return {Rcpt: None, Data: 554, Bdat: 554}.get(kind, 503)
    if state is State.HAS_RECIPIENTS:
        return None if kind in (Rcpt, Data, Bdat) else 503
    if state is State.IN_CHUNKING:
        return None if kind is Bdat else 503
    return 503


def refusal(command: object, conv: Conversation, rules: Rules) -> int | None:
    """The code a server owes ``command`` in ``conv``, or None when it goes on."""
    kind = type(command)
    code = sequence_refusal(conv.state, kind)
    if code is not None:
        return code
    # RFC 2033 section 4.1: LMTP has LHLO and no EHLO or HELO.
    if (rules.lmtp and kind in (Ehlo, Helo)) or (not rules.lmtp and kind is Lhlo):
        return 500
    if rules.require_tls and not conv.tls and kind in NEED_TLS:
        return 530
    offered = conv.extensions or {}
    if isinstance(command, StartTls):
        # RFC 3207 section 4.2: not offered, and refused, once TLS is on.
        if conv.tls:
            return 554
        if "STARTTLS" not in offered:
            return 502
    elif isinstance(command, Auth):
        # RFC 4954 section 4: one successful AUTH per session, offered
        # mechanisms only, and 538 for a plaintext mechanism before TLS.
        if conv.authenticated:
            return 503
        if "AUTH" not in offered:
            return 502
        if rules.auth_requires_tls and not conv.tls and command.mechanism in ("PLAIN", "LOGIN"):
            return 538
        if command.mechanism not in offered["AUTH"]:
            return 504
    elif isinstance(command, Bdat):
        if "CHUNKING" not in offered:  # RFC 3030 section 2
            return 502
    elif isinstance(command, Data):
        mail = conv.mail
        if mail is not None and mail.params.body is Body.BINARY_MIME:
            return 503  # RFC 3030 section 3: BINARYMIME content needs BDAT
    elif isinstance(command, Mail):
        params = command.params
        used = (
            ("SIZE", params.size is not None),  # RFC 1870
            ("8BITMIME", params.body is Body.EIGHT_BIT_MIME),  # RFC 6152
            ("BINARYMIME", params.body is Body.BINARY_MIME),  # RFC 3030 section 3
            ("SMTPUTF8", params.smtputf8),  # RFC 6531
        )
        if any(needed and keyword not in offered for keyword, needed in used):
            return 555
        limit = max_size(offered)
        if params.size is not None and limit is not None and params.size > limit:
            return 552  # RFC 1870 section 6.2
        path = command.reverse_path
        if path is not None and not is_ascii(path) and not params.smtputf8:
            return 553  # RFC 6531 section 3.4
    elif isinstance(command, Rcpt):
        if command.params.notify is not None and "DSN" not in offered:
            return 555  # RFC 3461 section 4
        mail = conv.mail
        if not is_ascii(command.forward_path) and not (mail is not None and mail.params.smtputf8):
            return 553
        if rules.max_recipients is not None and len(conv.recipients) >= rules.max_recipients:
            return 452  # RFC 5321 4.5.3.1.10
    return None


def move(conv: Conversation, answered: object, code: int, lines: tuple[str, ...] = ()) -> None:
    """Move ``conv`` where a reply of ``code`` to ``answered`` leads.

    RFC 5321 4.1.4 and 4.3.2: a 2yz (354 for DATA, 334 inside AUTH) accepts,
    a 4yz or 5yz leaves things as they were; 421 ends the session (3.8).
    """
    if code == 421:
        conv.state = State.CLOSED
        return
    kind = code // 100
    if answered is GREETING:
        conv.state = State.READY if kind == 2 else State.REFUSED
        return
    if isinstance(answered, MessageEnd):
        conv.end_transaction(State.GREETED)  # 4.1.1.4: the transaction ends either way
        return
    if sequence_refusal(conv.state, type(answered)) is not None:
        return
    if isinstance(answered, HELLOS):
        if kind == 2:  # 4.1.4: EHLO resets the transaction, like RSET
            conv.end_transaction(State.GREETED)
            conv.extensions = {} if isinstance(answered, Helo) else parse_extensions(lines[1:])
    elif isinstance(answered, Rset):
        if kind == 2:
            conv.end_transaction(State.READY if conv.state is State.READY else State.GREETED)
    elif isinstance(answered, Quit):
        if kind == 2:
            conv.state = State.CLOSED
    elif isinstance(answered, Mail):
        if kind == 2:
            conv.state = State.IN_TRANSACTION
            conv.mail = answered
    elif isinstance(answered, Rcpt):
        if kind == 2:
            conv.state = State.HAS_RECIPIENTS
            conv.recipients += (answered,)
    elif isinstance(answered, Data):
        if kind == 3:
            conv.state = State.IN_MESSAGE
    elif isinstance(answered, Bdat):
        # RFC 3030 section 2: LAST ends the transaction whatever the reply; a
        # refused chunk leaves only RSET.
        if answered.last:
            conv.end_transaction(State.GREETED)
        else:
            conv.state = State.IN_CHUNKING if kind == 2 else State.CHUNKING_FAILED
    elif isinstance(answered, StartTls):
        if kind == 2:
            conv.state = State.TLS_HANDSHAKE
    elif isinstance(answered, Auth):
        if kind == 3:
            conv.state = State.AUTH_EXCHANGE
        elif kind == 2:
            conv.authenticated = True
    elif isinstance(answered, AuthResponse):
        if kind == 2:
            conv.authenticated = True
        if kind != 3:
            conv.state = State.GREETED
    elif isinstance(answered, AuthCancel):
        conv.state = State.GREETED


def normalized(content: bytes) -> bytes:
    """The content a server must hand out for what the client was given: CRLF
    line endings only, and a final CRLF (RFC 5321 2.3.8 and 4.1.1.4)."""
    content = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content


def has_bare_line_ending(content: bytes, *, final: bool) -> bool:
    """A CR or LF outside a CRLF; a CR at the very end is not bare until the
    content is over, since an LF may follow it."""
    if not final and content.endswith(b"\r"):
        content = content[:-1]
    stripped = content.replace(b"\r\n", b"")
    return b"\r" in stripped or b"\n" in stripped


def content_fault(content: bytes, config: ServerConfig) -> str | None:
    """Why a server must refuse ``content``: "5.5.2" for a line longer than
    the text line limit (RFC 5321 4.5.3.1.6), else "5.3.4" for a message
    larger than the size limit (RFC 1870, RFC 3463 3.4); None for neither."""
    limit = config.max_text_line
    if limit is not None and any(len(line) + 2 > limit for line in content.split(b"\r\n")[:-1]):
        return "5.5.2"
    if config.max_message_size is not None and len(content) > config.max_message_size:
        return "5.3.4"
    return None


def command_line_length(command: object) -> int | None:
    """Octets of the line for the commands whose argument is free text."""
    if isinstance(command, (Ehlo, Helo, Lhlo)):
        return 5 + len(command.domain.encode()) + 2
    text = {Noop: "text", Help: "topic", Vrfy: "text", Expn: "text"}.get(type(command))
    if text is None:
        return None
    argument = getattr(command, text).encode()
    return 4 + (1 + len(argument) if argument else 0) + 2


def is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def pieces(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of ``size`` octets (0: one piece), at most 40."""
    if not data:
        return []
    if size == 0 or len(data) <= size:
        return [data]
    size = max(size, len(data) // 40 + 1)
    return [data[start : start + size] for start in range(0, len(data), size)]


def connection_view(conn: ServerConnection | ClientConnection) -> tuple[object, ...]:
    view: tuple[object, ...] = (
        conn.state,
        conn.extensions,
        conn.transaction,
        conn.recipients,
        conn.tls,
        conn.authenticated,
    )
    if isinstance(conn, ClientConnection):
        view += (conn.pending,)
    return view


@dataclass
class Expect:
    """Something the client sent that the server has not handed out yet:
    a command (with its BDAT octets), or the content after a 354."""

    command: object
    line: bytes = b""
    content: bytes = b""
    """BDAT: the octets sent so far. DATA: the content the client was given."""
    ended: bool = False
    received: bytearray = field(default_factory=bytearray)
    """The MessageChunk data the server handed out for it."""

    @property
    def complete(self) -> bool:
        if isinstance(self.command, Bdat):
            return len(self.content) == self.command.size
        if isinstance(self.command, MessageEnd):
            return self.ended
        return True


@dataclass
class Owed:
    """What the server owes a reply to, and what that reply may do."""

    answered: object
    event: object
    refused: bool
    """A CommandError or MessageRefused: only 4yz or 5yz (or 421) may answer."""
    moves: bool
    """False for a refused line: its reply moves nothing."""
    per_recipient: bool = False
    """LMTP after the content: one reply per accepted recipient (RFC 2033 4.2)."""
    total: int = 1
    left: int = 1
    sasl_step: sasl.Step | None = None


# --- SASL: one set of credentials, verifiers for every mechanism -----------------------

SCRAM_SALT = b"stateful-machine"
SCRAM_SHA1 = sasl.scram_credentials("pencil", SCRAM_SALT, 4096, "sha1")
SCRAM_SHA256 = sasl.scram_credentials("pencil", SCRAM_SALT, 4096, "sha256")
VERIFIERS = sasl.Verifiers(
    check_password=lambda user, password, authzid: (
        (user, password, authzid) == ("ann", "pencil", "")
    ),
    lookup_password=lambda user: "pencil" if user == "ann" else None,
    lookup_scram_sha1=lambda user: SCRAM_SHA1 if user == "ann" else None,
    lookup_scram_sha256=lambda user: SCRAM_SHA256 if user == "ann" else None,
    check_token=lambda user, token: (user, token) == ("ann", "tok3n"),
    check_external=lambda authzid: authzid == "",
)


def client_mechanism(name: str, correct: bool) -> sasl.ClientMechanism:
    """Ann's mechanism, with her secret or a wrong one."""
    if name == "EXTERNAL":
        return sasl.External("" if correct else "mallory")
    if name in ("XOAUTH2", "OAUTHBEARER"):
        return sasl.client_mechanism(name, username="ann", token="tok3n" if correct else "stale")
    password = "pencil" if correct else "crayon"
    return sasl.client_mechanism(name, username="ann", password=password, nonce="clientnonce")


# --- strategies -----------------------------------------------------------------------

booleans = st.booleans()


@functools.lru_cache(maxsize=None, typed=True)
def choice_of(*values: object) -> st.SearchStrategy[object]:
    """st.sampled_from, built once per set of values (moves draw in a loop)."""
    return st.sampled_from(values)


@functools.lru_cache(maxsize=None, typed=True)
def between(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


# Characters a user may put in command text: no ASCII control at all, HTAB
# included (RFC 5321 4.1.2); the event classes refuse them when built.
_CONTROLS = "".join(chr(code) for code in (*range(32), 127))
_text_characters = st.characters(exclude_categories=("Cs",), exclude_characters=_CONTROLS)
_word_characters = st.characters(exclude_categories=("Cs",), exclude_characters=_CONTROLS + " \t")
texts = st.text(st.one_of(st.sampled_from(" .:<>@é"), _text_characters), max_size=16)
non_blank_texts = texts.filter(lambda text: text.strip(" "))
domains = st.one_of(
    st.just("client.example"),
    st.text(_word_characters, min_size=1, max_size=20),
    # RFC 5321 4.5.3.1.2: 255 octets at most; longer ones cannot be built.
    st.integers(245, 255).map(lambda size: "d" * size),
)
long_texts = st.integers(505, 520).map(lambda size: "t" * size)

ANN = Address("ann", "example.org")
_fixed_addresses = [ANN, Address("bob", "example.net"), Address("jörg", "bücher.example")]
_fixed_paths = st.sampled_from(_fixed_addresses)
paths = st.one_of(_fixed_paths, _fixed_paths, addresses(allow_utf8=True))
mail_params = st.one_of(
    st.just(MailParams()),
    st.builds(
        MailParams,
        size=st.none() | st.sampled_from([0, 150, 10**9]),
        body=st.none() | st.sampled_from(Body),
        smtputf8=booleans,
    ),
)
rcpt_params = st.one_of(
    st.just(RcptParams()),
    choice_of((Notify.NEVER,), (Notify.SUCCESS, Notify.FAILURE)).map(
        lambda notify: RcptParams(notify=notify)
    ),
)
mails = st.builds(Mail, st.none() | paths, mail_params)
rcpts = st.builds(Rcpt, paths, rcpt_params)
hellos = st.one_of(st.builds(Ehlo, domains), st.builds(Helo, domains), st.builds(Lhlo, domains))

any_event = st.one_of(
    hellos,
    mails,
    rcpts,
    choice_of(Data(), Rset(), Quit(), StartTls(), AuthCancel(), MessageEnd()),
    st.builds(Noop, texts | long_texts),
    st.builds(Help, texts),
    st.builds(Vrfy, non_blank_texts | long_texts),
    st.builds(Expn, non_blank_texts),
    st.builds(Bdat, st.integers(0, 40), booleans),
    st.builds(
        Auth, st.sampled_from([*sasl.MECHANISMS, "X-UNKNOWN"]), st.none() | st.binary(max_size=24)
    ),
    st.builds(AuthResponse, st.binary(max_size=24)),
    st.builds(MessageChunk, st.binary(max_size=24)),
    st.just(Reply(250, "a client never sends a reply")),
)

# Lines of dots (RFC 5321 4.5.2 transparency), the end-of-data sequence
# itself, and bare CR and LF (RFC 5321 2.3.8; the SMTP smuggling bytes).
_content_pieces = [
    b".",
    b"..",
    b".x",
    b"x.",
    b"text",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n",
    b"\r\n.\r\n",
    b"\r\n.",
    b".\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\x00\xff",
]
bodies = st.one_of(
    st.binary(max_size=160),
    st.lists(st.sampled_from(_content_pieces), min_size=1, max_size=16).map(b"".join),
    st.lists(st.sampled_from(_content_pieces), min_size=1, max_size=16).map(b"".join),
    # Long lines: over 80 octets, and one octet over the 1000 of RFC 5321 4.5.3.1.6.
    st.sampled_from([b"a" * 90 + b"\r\n.b\r\n", b"L" * 999 + b"\r\n"]),
)
wire_pieces = choice_of(0, 0, 0, 1, 3, 17)


REFUSAL_CODES = [450, 451, 452, 454, 500, 501, 502, 503, 504, 535, 550, 553, 554]
# Codes and texts a server application might send where they do not belong.
ODD_CODES = [200, 214, 220, 221, 235, 250, 251, 334, 354, 450, 500, 554]
ODD_TEXTS = ["", "odd", "2.0.0 looks enhanced", "two\nlines", "naïve", "x" * 600]

KNOWN_VERBS = [
    *("EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "VRFY"),
    *("EXPN", "HELP", "NOOP", "QUIT", "STARTTLS", "AUTH", "XCLIENT", "XFORWARD"),
]
# Characters that str.upper() turns into ASCII letters: a verb spelled with
# them is not a verb (RFC 5321 2.4: verbs are ASCII, case matched loosely).
_CONFUSABLES = {"ST": "\ufb06", "S": "\u017f", "I": "\u0131"}


def _confused(verb: str, rest: bytes) -> bytes:
    for ascii_letters, other in _CONFUSABLES.items():
        if ascii_letters in verb:
            verb = verb.replace(ascii_letters, other, 1)
            break
    return verb.encode() + rest


garbage_lines = st.tuples(
    st.one_of(
        st.binary(max_size=40),
        st.tuples(st.sampled_from(KNOWN_VERBS), st.binary(max_size=30)).map(
            lambda drawn: drawn[0].encode() + b" " + drawn[1]
        ),
        st.tuples(st.sampled_from(KNOWN_VERBS), choice_of(b"", b" x", b" FROM:<a@b.c>")).map(
            lambda drawn: _confused(*drawn)
        ),
        choice_of(600, 13000).map(lambda size: b"Z" * size),
    ).map(lambda line: line.replace(b"\n", b"")),
    choice_of(b"\r\n", b"\r\n", b"\n"),
)


def _script(hello: object) -> dict[State, st.SearchStrategy[object]]:
    """What a well-behaved client sends next in each state."""
    return {
        State.REFUSED: st.just(Quit()),
        State.READY: choice_of(hello, hello, hello, hello, Helo("client.example"), Rset(), Noop()),
        State.GREETED: st.one_of(
            st.just(Mail(ANN)),
            mails,
            mails,
            choice_of(StartTls(), StartTls(), Rset(), Noop(), Help(), Vrfy("ann")),
            choice_of(Expn("staff"), Rset(), Noop(), Quit()),
        ),
        State.IN_TRANSACTION: st.one_of(st.just(Rcpt(ANN)), rcpts),
        State.HAS_RECIPIENTS: st.one_of(rcpts, st.just(Data()), st.just(Data())),
        State.IN_CHUNKING: choice_of(Bdat(0, last=True), Rset()),
        State.CHUNKING_FAILED: st.just(Rset()),
        State.IN_MESSAGE: st.just(MessageEnd()),
        State.AUTH_EXCHANGE: st.just(AuthCancel()),
    }


SMTP_SCRIPT = _script(Ehlo("client.example"))
LMTP_SCRIPT = _script(Lhlo("client.example"))
NOOP = st.just(Noop())
early_events = st.lists(any_event, max_size=2)
cut_sizes = st.lists(st.integers(0, 64), max_size=4)
chunks = st.one_of(st.binary(max_size=120), bodies)
junk = st.binary(max_size=24)
garbage_groups = st.lists(garbage_lines, min_size=1, max_size=3)


def verb_is_known(line: bytes) -> bool:
    """Whether the line starts with a verb, ASCII letters matched without case."""
    return line.split(b" ", 1)[0].upper() in {verb.encode() for verb in KNOWN_VERBS}


def note(label: str) -> None:
    """Count ``label`` in hypothesis's statistics (--hypothesis-show-statistics)."""
    if label:
        event(label)


# --- the machine ------------------------------------------------------------------------


class EnginesBackToBack(RuleBasedStateMachine):
    """Both engines, the wire between them, and the model they must match."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    # -- setup

    @initialize(data=st.data())
    def connect(self, data: st.DataObject) -> None:
        """Any configuration the engines support: SMTP or LMTP, with or without
        PIPELINING, CHUNKING, STARTTLS, AUTH, DSN, small limits, implicit TLS."""
        draw = data.draw
        lmtp = draw(booleans, label="lmtp")
        implicit_tls = draw(choice_of(False, False, True), label="implicit_tls")
        self.server_config = ServerConfig(
            lmtp=lmtp,
            pipelining=draw(choice_of(True, True, False), label="pipelining"),
            chunking=draw(choice_of(True, True, False), label="chunking"),
            binarymime=draw(booleans, label="binarymime"),
            starttls=draw(choice_of(True, True, False), label="starttls"),
            auth_mechanisms=draw(
                choice_of(sasl.MECHANISMS, sasl.MECHANISMS, (), ("PLAIN", "SCRAM-SHA-1")),
                label="auth_mechanisms",
            ),
            auth_requires_tls=draw(booleans, label="auth_requires_tls"),
            dsn=draw(booleans, label="dsn"),
            enhanced_status_codes=draw(booleans, label="enhanced_status_codes"),
            max_recipients=draw(choice_of(100, 2), label="max_recipients"),
            max_message_size=draw(choice_of(10_240_000, None, 200), label="max_size"),
            max_text_line=draw(choice_of(1000, None, 80), label="max_text_line"),
            bare_line_ending=draw(st.sampled_from(BareLinePolicy), label="server_bare_lf"),
            require_tls=draw(st.sampled_from([False] * 5 + [True]), label="require_tls"),
        )
        self.client_config = ClientConfig(
            lmtp=lmtp,
            require_tls=draw(st.sampled_from([False] * 5 + [True]), label="client_tls"),
            bare_line_ending=draw(
                choice_of(BareLinePolicy.NORMALIZE, BareLinePolicy.REJECT),
                label="client_bare_lf",
            ),
        )
        config = self.server_config
        self.server_rules = Rules(
            lmtp, config.require_tls, config.auth_requires_tls, config.max_recipients
        )
        self.client_rules = Rules(lmtp, self.client_config.require_tls)
        self.implicit_tls = implicit_tls
        self._open(data)

    def _open(self, data: st.DataObject) -> None:
        """Fresh engines; events the client tries before the greeting must be
        refused (RFC 5321 3.1: the client waits for it); then, mostly, the
        greeting: 220, or 554 (only QUIT may follow), or 421."""
        self.server = ServerConnection(self.server_config, tls=self.implicit_tls)
        self.client = ClientConnection(self.client_config, tls=self.implicit_tls)
        self.conv = Conversation(tls=self.implicit_tls)
        self.pending: deque[object] = deque([GREETING])
        """What the client sent and has no reply to, oldest first."""
        self.server_queue: deque[Expect] = deque()
        self.owed: Owed | None = Owed(GREETING, None, refused=False, moves=True)
        self.writer_open = False  # DATA was answered 354: content may flow
        self.chunk_left = 0  # BDAT octets announced and not yet sent
        self.chunk_total = 0  # BDAT octets of the open transaction (RFC 1870)
        self.client_closed = False
        self.client_sasl: sasl.ClientMechanism | None = None
        self.server_sasl: sasl.ServerMechanism | None = None
        self.sasl_clean = False  # both mechanisms followed the script
        self.sasl_correct = False  # the client holds the right secret
        self.challenge = ""
        self.unsent = bytearray()  # client bytes held back for one read
        assert self.server.next_event() is PAUSED  # the greeting is owed first
        assert self.client.next_event() is NEED_DATA
        self.ready = True
        for early in data.draw(early_events, label="before the greeting"):
            assert not self._client_sends(early, 0)
        greeting = data.draw(st.sampled_from([220] * 8 + [554, 421, 0]), label="greeting")
        if greeting:
            self._server_sends(Reply(greeting, "mx.example"), 0)

    # -- the model's predictions

    def _projected(self) -> Conversation:
        """Where the conversation will be if every pending command succeeds:
        what the client judges a new pipelined command against (RFC 2920)."""
        conv = self.conv.copy()
        for command in self.pending:
            if command is not GREETING:
                move(conv, command, 354 if isinstance(command, Data) else 250)
        return conv

    def _open_content(self) -> Expect | None:
        queue = self.server_queue
        if queue and isinstance(queue[-1].command, MessageEnd) and not queue[-1].ended:
            return queue[-1]
        return None

    def _why_client_refuses(self, event: object) -> str | None:
        """Why the client must not send ``event`` now, or None."""
        if self.conv.state is State.CLOSED:
            return "the connection is closed"
        pending = self.pending
        rejects_bare = self.client_config.bare_line_ending is BareLinePolicy.REJECT
        if isinstance(event, (MessageChunk, MessageEnd)):
            if isinstance(event, MessageChunk) and self.chunk_left:
                if len(event.data) > self.chunk_left:
                    return "more octets than BDAT announced (RFC 3030 section 2)"
                return None
            if (
                isinstance(event, MessageChunk)
                and not event.data
                and pending
                and isinstance(pending[-1], Bdat)
            ):
                return None  # an empty chunk after BDAT: nothing to send
            if not self.writer_open or pending:
                return "content flows only after 354 (RFC 5321 4.1.1.4)"
            open_content = self._open_content()
            content = open_content.content if open_content else b""
            final = isinstance(event, MessageEnd)
            if not final:
                content += event.data  # type: ignore[union-attr]
            if rejects_bare and has_bare_line_ending(content, final=final):
                return "bare CR or LF, and the client's policy is REJECT"
            return None
        if not isinstance(event, COMMANDS):
            return "a client sends commands and content only"
        if self.chunk_left:
            return "the octets of the last BDAT are not all sent (RFC 3030 section 2)"
        if pending:
            if pending[-1] is GREETING:
                return "the greeting has not come (RFC 5321 3.1)"
            if self.conv.extensions is None or "PIPELINING" not in self.conv.extensions:
                return "PIPELINING is not in force: one command at a time (RFC 2920)"
            if not isinstance(pending[-1], PIPELINABLE):
                return f"{pending[-1]!r} ends a pipelined group (RFC 2920 section 3.1)"
        if self.writer_open:
            return "the message content is not finished"
        length = command_line_length(event)
        if length is not None and length > MAX_COMMAND_LINE:
            return "command line over 512 octets (RFC 5321 4.5.3.1.4)"
        code = refusal(event, self._projected(), self.client_rules)
        if code is not None:
            return f"a server would answer {code}"
        return None

    def _why_server_refuses(self, reply: Reply) -> str | None:
        """Why the server application must not send ``reply`` now, or None."""
        if self.conv.state is State.CLOSED:
            return "the connection is closed"
        if any(len(line.encode("utf-8", "surrogateescape")) > 400 for line in reply.lines):
            return "a reply line over 512 octets (RFC 5321 4.5.3.1.5)"
        code = reply.code
        kind = code // 100
        if code == 421:
            return None  # RFC 5321 3.8: at any time
        owed = self.owed
        if owed is None:
            return "no command awaits a reply"
        if kind in (4, 5):
            return None
        if owed.refused:
            return "the line was refused: 4yz or 5yz only"
        answered = owed.answered
        if answered is GREETING:
            return None if kind == 2 else "a greeting is 220 or 554 (RFC 5321 4.3.2)"
        if isinstance(answered, Quit):
            return None if code == 221 else "QUIT is answered 221 (RFC 5321 4.1.1.10)"
        if isinstance(answered, Data):
            return None if kind == 3 else "DATA is answered 354 (RFC 5321 4.3.2)"
        if isinstance(answered, (Auth, AuthResponse)):
            if code == 334 and not is_base64(reply.lines[0]):
                return "a 334 challenge is base64 (RFC 4954 section 4)"
            return None if kind in (2, 3) else "AUTH takes 235, 334, 4yz or 5yz"
        if isinstance(answered, AuthCancel):
            return "a cancelled exchange is answered 501 (RFC 4954 section 4)"
        return None if kind == 2 else f"{answered!r} takes 2yz, 4yz or 5yz (RFC 5321 4.3.2)"

    def _expected_answer(self, code: int) -> object:
        """The command the client must pair a reply of ``code`` with."""
        if not self.pending or self.pending[0] is GREETING:
            return None
        owed = self.owed
        if owed is not None and owed.per_recipient and code != 421:
            # RFC 2033 4.2: the replies after the content report on the
            # accepted recipients, in order.
            note(f"LMTP reply for recipient {owed.total - owed.left + 1} of {owed.total}")
            return self.conv.recipients[owed.total - owed.left]
        return self.pending[0]

    # -- moving bytes

    def _drain_server(self) -> None:
        while True:
            event = self.server.next_event()
            if event is NEED_DATA:
                assert self.owed is None, f"NEED_DATA while a reply is owed to {self.owed}"
                return
            if event is PAUSED:
                assert self.owed is not None or self.server.state is State.TLS_HANDSHAKE, (
                    "PAUSED with no reply owed"
                )
                return
            self._server_hands_out(event)
            if isinstance(event, ConnectionClosed):
                return

    def _drain_client(self) -> list[object]:
        events: list[object] = []
        while True:
            event = self.client.next_event()
            if event is NEED_DATA:
                return events
            if event is PAUSED:
                assert self.client.state is State.TLS_HANDSHAKE
                return events
            events.append(event)
            if isinstance(event, ConnectionClosed):
                return events

    def _to_server(self, data: bytes, size: int | None) -> None:
        """Deliver ``data`` (and anything held back) in pieces of ``size``;
        None holds it back, so that several sends reach the server in one read."""
        self.unsent += data
        if size is not None:
            self._flush(size)

    def _flush(self, size: int) -> None:
        data = bytes(self.unsent)
        self.unsent.clear()
        for piece in pieces(data, size):
            self.server.receive_data(piece)
            self._drain_server()

    def _owe(self, answered: object, event: object, *, refused: bool, moves: bool) -> Owed:
        per_recipient = (
            self.server_config.lmtp
            and not isinstance(event, CommandError)
            and (isinstance(answered, MessageEnd) or (isinstance(answered, Bdat) and answered.last))
        )
        total = max(len(self.conv.recipients), 1) if per_recipient else 1
        self.owed = Owed(answered, event, refused, moves, per_recipient, total, total)
        return self.owed

    def _server_hands_out(self, event: object) -> None:
        """Check one event from the server against what the client sent."""
        if isinstance(event, ConnectionClosed):
            assert self.client_closed or self.conv.state is State.CLOSED, "a close nobody made"
            return
        assert self.owed is None, f"{event!r} handed out while {self.owed} awaits a reply"
        assert self.server_queue, f"the server handed out {event!r}, which nobody sent"
        expect = self.server_queue[0]
        command = expect.command
        if isinstance(event, MessageChunk):
            assert isinstance(command, (MessageEnd, Bdat)), f"content where {command!r} was sent"
            expect.received += event.data
            return
        self.server_queue.popleft()
        event_name = type(event).__name__
        note(f"server hands out {event_name}" if event_name != type(command).__name__ else "")
        received = bytes(expect.received)
        if isinstance(command, MessageEnd):
            assert expect.ended, f"{event!r} before the client ended the content"
            content = normalized(expect.content)
            fault = content_fault(content, self.server_config)
            note(f"content {'refused' if fault else 'arrives'} after DATA")
            if fault is None:
                assert event == MessageEnd(), event
                # RFC 5321 4.5.2: un-stuffed, the content is what was sent.
                assert received == content, (received, content)
            else:
                # RFC 5321 4.5.3.1.6 and RFC 1870: refused after its end, and
                # only what came before the fault was handed out.
                assert isinstance(event, MessageRefused), (event, fault)
                assert event.reply.code == 552, event
                if fault == "5.3.4":
                    assert event.reply.enhanced == "5.3.4", event  # RFC 3463 3.4
                assert content.startswith(received), (received, content)
            self._owe(command, event, refused=fault is not None, moves=True)
            return
        verdict = refusal(command, self.conv, self.server_rules)
        if isinstance(command, Bdat):
            if verdict is None:
                # RFC 3030 section 2: the octets arrive as sent, unchanged;
                # RFC 1870: over the size limit the chunk is refused with 552.
                self.chunk_total += command.size
                limit = self.server_config.max_message_size
                if limit is not None and self.chunk_total > limit:
                    assert isinstance(event, MessageRefused), (event, self.chunk_total)
                    assert (event.reply.code, event.reply.enhanced) == (552, "5.3.4"), event
                    assert expect.content.startswith(received)
                    self._owe(command, event, refused=True, moves=True)
                    return
                assert received == expect.content, (received, expect.content)
            else:
                assert received == b"", "the octets of a refused BDAT must be dropped"
        if verdict is not None:
            assert isinstance(event, CommandError), (
                f"{command!r} in {self.conv.state.name} must be refused with {verdict}, "
                f"got {event!r}"
            )
            assert event.line == expect.line, event
            assert event.reply.code == verdict, (command, event)
            self._owe(command, event, refused=True, moves=False)
            return
        assert event == command, f"the client sent {command!r}, the server read {event!r}"
        note(f"server hands out {type(command).__name__}")
        owed = self._owe(command, event, refused=False, moves=True)
        if isinstance(command, Auth):
            self.server_sasl = sasl.server_mechanism(
                command.mechanism, VERIFIERS, nonce=lambda: "servernonce"
            )
            owed.sasl_step = self.server_sasl.start(command.initial_response)
        elif isinstance(command, AuthResponse):
            mechanism = self.server_sasl
            if mechanism is not None and not mechanism.is_complete:
                owed.sasl_step = mechanism.step(command.data)

    def _client_sends(self, event: object, size: int | None) -> bool:
        """The client sends ``event`` if the model allows it; else ``send``
        must raise LocalProtocolError and change nothing."""
        why = self._why_client_refuses(event)
        before = connection_view(self.client)
        try:
            data = self.client.send(event)  # type: ignore[arg-type]
        except LocalProtocolError as error:
            assert why is not None, f"the client refused {event!r}, which is allowed: {error}"
            note(f"client refuses {type(event).__name__}")
            assert connection_view(self.client) == before, "a refused send changed the client"
            return False
        assert why is None, f"the client sent {event!r} although {why}"
        if self.pending and self.pending[-1] is not GREETING and isinstance(event, COMMANDS):
            note(f"client pipelines {type(event).__name__} after {type(self.pending[-1]).__name__}")
        if isinstance(event, MessageChunk) and not self.writer_open:
            # BDAT octets, or an empty chunk after BDAT: raw (RFC 3030 section 2).
            assert data == event.data
            if event.data:
                self.server_queue[-1].content += event.data
                self.chunk_left -= len(event.data)
            self._to_server(data, size)
            return True
        if isinstance(event, (MessageChunk, MessageEnd)):
            expect = self._open_content()
            if expect is None:
                expect = Expect(MessageEnd())
                self.server_queue.append(expect)
            if isinstance(event, MessageChunk):
                expect.content += event.data
            else:
                expect.command = event  # the very object the client's reply pairs with
                expect.ended = True
                self.writer_open = False
                self.pending.append(event)
                # RFC 5321 4.1.1.4: the content ends with CRLF "." CRLF.
                assert data.endswith(b".\r\n"), data
        else:
            assert data.endswith(b"\r\n") and data.count(b"\n") == 1, data
            self.pending.append(event)
            self.server_queue.append(Expect(event, line=data[:-2]))
            if isinstance(event, Bdat):
                self.chunk_left = event.size
        self._to_server(data, size)
        return True

    def _server_sends(self, reply: Reply, size: int, *, natural: bool = False) -> None:
        """The server application sends ``reply``: legal replies reach the
        client, which must hand out the same Reply paired with the right
        command; illegal ones must raise LocalProtocolError."""
        why = self._why_server_refuses(reply)
        before = connection_view(self.server)
        try:
            data = self.server.send(reply)
        except LocalProtocolError as error:
            assert why is not None, f"the server refused {reply!r}, which is allowed: {error}"
            note("server refuses a reply")
            assert connection_view(self.server) == before, "a refused reply changed the server"
            if self.owed is not None:
                assert self.server.next_event() is PAUSED  # still owed
            return
        assert why is None, f"the server sent {reply!r} although {why}"
        owed = self.owed
        offered = self.conv.extensions or {}
        hello_like = owed is not None and (
            owed.answered is GREETING
            or (isinstance(owed.answered, HELLOS) and not isinstance(owed.event, CommandError))
        )
        add_enhanced = (
            "ENHANCEDSTATUSCODES" in offered and not hello_like and not 300 <= reply.code < 400
        )
        answers = self._expected_answer(reply.code)
        if natural and owed is not None and self.sasl_clean:
            step = owed.sasl_step
            if step is not None and step.is_final:
                note(f"AUTH exchange {'succeeds' if step.success else 'fails'}")
                # RFC 4954 with the mechanism's RFC: the right secret, and only
                # it, authenticates.
                assert step.success == self.sasl_correct, step
        self._apply_reply(owed, reply)
        events: list[object] = []
        for piece in pieces(data, size):
            self.client.receive_data(piece)
            events += self._drain_client()
        replies = [event for event in events if isinstance(event, Reply)]
        assert len(replies) == 1, events
        [received] = replies
        expected_events = [received]
        if self.conv.state is State.CLOSED:
            expected_events.append(ConnectionClosed())
        assert events == expected_events, events
        assert (received.code, received.lines) == (reply.code, reply.lines), (received, reply)
        if reply.enhanced is not None:
            assert received.enhanced == reply.enhanced, received
        elif add_enhanced:
            # RFC 2034 section 3: once ENHANCEDSTATUSCODES is in force every
            # reply carries one, of the reply's class.
            assert received.enhanced is not None, received
            assert received.enhanced[0] == str(reply.code)[0], received
        elif not (owed is not None and isinstance(owed.event, CommandError)):
            assert received.enhanced is None, received
        assert received.answers is answers, (received, received.answers, answers)
        if (
            natural
            and received.code == 235
            and self.sasl_clean
            and isinstance(self.client_sasl, (sasl.ScramSha1, sasl.ScramSha256))
        ):
            # RFC 5802 section 9: the server proved it knows the key too.
            assert self.client_sasl.is_complete
        if self.conv.state is State.AUTH_EXCHANGE:
            self.challenge = received.text
        self._drain_server()

    def _apply_reply(self, owed: Owed | None, reply: Reply) -> None:
        if reply.code == 421:
            self._close()
            self.pending.clear()
            return
        assert owed is not None
        owed.left -= 1
        if owed.left:
            return
        self.owed = None
        head = self.pending.popleft()
        assert head is owed.answered, (head, owed)
        if owed.moves:
            move(self.conv, owed.answered, reply.code, reply.lines)
        if isinstance(owed.answered, Data) and self.conv.state is State.IN_MESSAGE:
            self.writer_open = True
        if self.conv.state in (State.GREETED, State.READY):
            self.chunk_total = 0
        if self.conv.state is State.CLOSED:
            self._close()
            self.pending.clear()

    def _close(self) -> None:
        self.conv.state = State.CLOSED
        self.owed = None
        self.server_queue.clear()
        self.writer_open = False
        self.chunk_left = 0

    # -- the server application

    def _natural_reply(self, owed: Owed, data: st.DataObject) -> Reply:
        """The reply a well-behaved server application gives."""
        event, answered = owed.event, owed.answered
        if isinstance(event, (CommandError, MessageRefused)):
            return event.reply  # the RFC's suggestion
        if answered is GREETING:
            return self.server.greeting()
        if isinstance(answered, (Ehlo, Lhlo)):
            self._check_advertised()
            if data.draw(booleans, label="full EHLO reply"):
                return self.server.ehlo_reply()
            lines = self.server.advertised().lines()
            mostly = choice_of(True, True, True, False)
            keep = data.draw(st.lists(mostly, min_size=len(lines), max_size=len(lines)))
            kept = [line for line, kept in zip(lines, keep, strict=True) if kept]
            return Reply(250, ("localhost", *kept))
        if isinstance(answered, (Auth, AuthResponse)):
            step = owed.sasl_step
            if step is None:
                return Reply(535, "authentication failed")
            if step.challenge is not None:
                return Reply(334, base64.b64encode(step.challenge).decode("ascii"))
            if step.success:
                return Reply(235, "authenticated")
            return Reply(501 if step.is_malformed else 535, "authentication failed")
        replies = {
            Helo: Reply(250, "localhost"),
            Mail: Reply(250, "sender ok"),
            Rcpt: Reply(251, "recipient ok, will forward"),
            Data: Reply(354, "end data with <CR><LF>.<CR><LF>"),
            MessageEnd: Reply(250, "queued"),
            Bdat: Reply(250, "chunk received"),
            Rset: Reply(250, "reset"),
            Noop: Reply(250, ""),
            Vrfy: Reply(252, "cannot verify, will try"),
            Expn: Reply(250, ("ann <ann@example.org>", "bob <bob@example.net>")),
            Help: Reply(214, ("commands: EHLO MAIL RCPT DATA", "see RFC 5321")),
            Quit: Reply(221, "bye"),
            StartTls: Reply(220, "ready to start TLS"),
            AuthCancel: Reply(501, "cancelled"),
        }
        reply = replies[type(answered)]
        if isinstance(answered, Rcpt) and data.draw(booleans):
            reply = Reply(250, "recipient ok")
        return reply

    def _check_advertised(self) -> None:
        """The extensions the server offers fit its configuration: RFC 3207
        4.2 (no STARTTLS under TLS), RFC 4954 section 4 (PLAIN and LOGIN only
        under TLS when the policy says so)."""
        config = self.server_config
        offered = self.server.advertised()
        assert offered.starttls == (config.starttls and not self.conv.tls)
        assert offered.pipelining == config.pipelining
        assert offered.chunking == config.chunking
        assert offered.dsn == config.dsn
        mechanisms = set(offered.auth_mechanisms)
        assert mechanisms <= set(config.auth_mechanisms)
        if config.auth_requires_tls and not self.conv.tls:
            assert not mechanisms & {"PLAIN", "LOGIN"}

    # -- the moves: each a method; ``step`` picks one, by weight, among those
    # -- that make sense now (one rule, so that hypothesis's swarm testing
    # -- never switches off the server or the client for a whole run)

    def _moves(self) -> list[str]:
        conv = self.conv
        offered = conv.extensions or {}
        idle = (
            self.owed is None
            and not self.pending
            and not self.server_queue
            and not self.writer_open
        )
        weighted = [
            (6, "server_replies", self.owed is not None or conv.state is State.TLS_HANDSHAKE),
            (5, "client_follows_the_script", conv.state in SCRIPTED_STATES),
            (3, "client_sends_a_group", conv.state in SCRIPTED_STATES),
            (4, "client_sends_content", bool(self.writer_open or self.chunk_left)),
            (2, "client_sends_anything", True),
            (2, "client_sends_bdat", "CHUNKING" in offered),
            (2, "client_starts_auth", "AUTH" in offered and not self.pending),
            (
                5,
                "client_answers_the_challenge",
                conv.state is State.AUTH_EXCHANGE and not self.pending,
            ),
            (1, "garbage_reaches_the_server", idle and conv.state in GARBAGE_STATES),
            (1, "out_of_turn", True),
            (4, "reconnect", conv.state is State.CLOSED),
        ]
        return [name for weight, name, possible in weighted if possible for _ in range(weight)]

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        """One move by the client, the server application or the world."""
        move_name = data.draw(choice_of(*self._moves()), label="move")
        getattr(self, move_name)(data)

    def reconnect(self, data: st.DataObject) -> None:
        """A new connection with the same configuration, once one is over."""
        self._open(data)

    def server_replies(self, data: st.DataObject) -> None:
        """The application answers what the server hands out, up to three
        times in a row: mostly as a well-behaved server would, sometimes
        refusing, sometimes oddly (which may be illegal), rarely with 421
        (RFC 5321 3.8). During a TLS handshake it completes the handshake."""
        size = data.draw(wire_pieces, label="piece size")
        for _ in range(data.draw(between(1, 3), label="replies")):
            if self.conv.state is State.TLS_HANDSHAKE:
                self.tls_handshake_completes()
                return
            owed = self.owed
            if owed is None or self.conv.state is State.CLOSED:
                return
            roll = data.draw(between(0, 99), label="roll")
            natural = roll < 72
            if natural:
                reply = self._natural_reply(owed, data)
            elif roll < 89:
                code = data.draw(choice_of(*REFUSAL_CODES), label="code")
                enhanced = data.draw(choice_of(None, f"{code // 100}.7.1"))
                reply = Reply(code, "refused", enhanced)
            elif roll < 99:
                code = data.draw(choice_of(*ODD_CODES), label="code")
                reply = Reply(code, data.draw(choice_of(*ODD_TEXTS), label="text"))
            else:
                reply = Reply(421, "service closing transmission channel")
            if isinstance(owed.answered, (Auth, AuthResponse)) and not natural:
                self.sasl_clean = False
            self._server_sends(reply, size, natural=natural)

    def tls_handshake_completes(self) -> None:
        """RFC 3207 section 4.2: nothing is read during the handshake; after
        it both sides forget what they knew, and EHLO is needed again."""
        assert self.server.next_event() is PAUSED
        assert self.client.next_event() is PAUSED
        self.server.tls_started()
        self.client.tls_started()
        note("TLS handshake")
        self.conv.end_transaction(State.READY)
        self.conv.extensions = None
        self.conv.authenticated = False
        self.conv.tls = True

    def client_sends_anything(self, data: st.DataObject) -> None:
        """Any event at all, legal or not now."""
        event = data.draw(any_event, label="event")
        size = data.draw(wire_pieces, label="piece size")
        if self._client_sends(event, size) and isinstance(event, (Auth, AuthResponse, AuthCancel)):
            self.sasl_clean = False
            if isinstance(event, Auth):
                self.client_sasl = None

    def client_follows_the_script(self, data: st.DataObject, *, one_read: bool = False) -> bool:
        """What a client would send next where the conversation (with its
        pending commands) stands; pipelined when the server allows it.
        With ``one_read`` the bytes wait, to reach the server with the rest
        of the group in one read."""
        if self.writer_open or self.chunk_left:
            self.client_sends_content(data)
            return True
        if self.conv.state is State.AUTH_EXCHANGE and not self.pending:
            self.client_answers_the_challenge(data)
            return True
        projected = self._projected()
        state = projected.state
        wants_tls = self.server_config.require_tls or self.client_config.require_tls
        if (
            state is State.GREETED
            and wants_tls
            and not projected.tls
            and "STARTTLS" in (projected.extensions or {})
            and data.draw(booleans, label="STARTTLS first")
        ):
            return self._client_sends(StartTls(), None if one_read else 0)
        if (
            state is State.GREETED
            and not projected.authenticated
            and "AUTH" in (projected.extensions or {})
            and not self.pending
            and data.draw(between(0, 3), label="AUTH") == 0
        ):
            return self.client_starts_auth(data)
        if (
            state in (State.HAS_RECIPIENTS, State.IN_CHUNKING)
            and "CHUNKING" in (self.conv.extensions or {})
            and data.draw(booleans, label="BDAT")
        ):
            return self.client_sends_bdat(data)
        script = LMTP_SCRIPT if self.client_config.lmtp else SMTP_SCRIPT
        event = data.draw(script.get(state, NOOP), label="event")
        size = None if one_read else data.draw(wire_pieces, label="piece size")
        sent = self._client_sends(event, size)
        if sent and isinstance(event, AuthCancel):
            self.sasl_clean = False
        return sent

    def client_sends_a_group(self, data: st.DataObject) -> None:
        """Several scripted commands in a row, before any reply: a pipelined
        group where PIPELINING is in force (RFC 2920 section 3), refused
        command by command where it is not or where the group must end."""
        one_read = data.draw(booleans, label="one read")
        for _ in range(data.draw(between(2, 5), label="group size")):
            if self.conv.state not in SCRIPTED_STATES:
                break
            if not self.client_follows_the_script(data, one_read=one_read):
                break
        self._flush(data.draw(wire_pieces, label="piece size"))

    def client_sends_content(self, data: st.DataObject) -> None:
        """Message content in any pieces: after 354, arbitrary bytes that the
        client dot-stuffs and CRLF-normalises (RFC 5321 4.5.2, 2.3.8); after
        BDAT, the rest of the announced octets, raw (RFC 3030 section 2)."""
        body = data.draw(bodies, label="body")
        size = data.draw(wire_pieces, label="piece size")
        if self.chunk_left:
            octets = (body + b"\x00" * self.chunk_left)[: self.chunk_left]
            self._client_sends(MessageChunk(octets), size)
            return
        one_read = data.draw(booleans, label="one read")
        start = 0
        for cut in [*data.draw(cut_sizes, label="cuts"), len(body)]:
            self._client_sends(MessageChunk(body[start : start + cut]), None if one_read else size)
            start += cut
        if data.draw(between(0, 3), label="end") > 0:
            self._client_sends(MessageEnd(), None if one_read else size)
        self._flush(size)

    def client_sends_bdat(self, data: st.DataObject) -> bool:
        """BDAT and its octets, all at once, split, or partly (the rest comes
        with a later move); pipelined with the commands around it when the
        server offers PIPELINING (RFC 3030 section 4)."""
        chunk = data.draw(chunks, label="chunk")
        last = data.draw(booleans, label="last")
        sent = data.draw(choice_of("all", "all", "split", "half", "none"), label="sent")
        size = data.draw(wire_pieces, label="piece size")
        if not self._client_sends(Bdat(len(chunk), last), size):
            return False
        middle = len(chunk) // 2
        if sent == "all":
            self._client_sends(MessageChunk(chunk), size)
        elif sent == "split":
            self._client_sends(MessageChunk(chunk[:middle]), size)
            self._client_sends(MessageChunk(chunk[middle:]), size)
        elif sent == "half":
            self._client_sends(MessageChunk(chunk[:middle]), size)
        return True

    def client_starts_auth(self, data: st.DataObject) -> bool:
        """AUTH with a real mechanism, with or without an initial response
        (RFC 4954 section 4), with the right secret or a wrong one."""
        mechanism = data.draw(choice_of(*sasl.MECHANISMS), label="mechanism")
        correct = data.draw(booleans, label="correct secret")
        initial = data.draw(booleans, label="initial response")
        client_sasl = client_mechanism(mechanism, correct)
        response = client_sasl.initial_response() if initial else None
        if not self._client_sends(Auth(mechanism, response), data.draw(wire_pieces)):
            return False
        self.client_sasl = client_sasl
        self.sasl_correct = correct
        self.sasl_clean = True
        return True

    def client_answers_the_challenge(self, data: st.DataObject) -> None:
        """The client mechanism answers the 334 challenge; or the client
        cancels with "*" (RFC 4954 section 4) or answers junk."""
        choice = data.draw(between(0, 9), label="answer")
        event: AuthResponse | AuthCancel
        if choice == 0:
            event = AuthCancel()
            self.sasl_clean = False
        elif choice == 1:
            event = AuthResponse(data.draw(junk, label="junk"))
            self.sasl_clean = False
        else:
            try:
                if self.client_sasl is None:
                    raise sasl.SaslError("no mechanism: the AUTH came from elsewhere")
                challenge = base64.b64decode(self.challenge, validate=True)
                event = AuthResponse(self.client_sasl.respond(challenge))
            except (binascii.Error, ValueError, sasl.SaslError) as error:
                assert not self.sasl_clean, f"a clean exchange broke the mechanism: {error}"
                event = AuthCancel()
        self._client_sends(event, data.draw(wire_pieces, label="piece size"))

    def garbage_reaches_the_server(self, data: st.DataObject) -> None:
        """Bytes no client engine would send, typed straight into the server:
        a line whose verb is not a verb yields a CommandError with a 4yz/5yz
        suggestion (RFC 5321 4.2.2: 500 for an unrecognized command); no line
        raises or moves the state. The replies go nowhere."""
        lines = data.draw(garbage_groups, label="garbage")
        for line, ending in lines:
            if self.server_config.chunking and line[:5].upper() in (b"BDAT ", b"BDAT"):
                line = b"X" + line  # an unreadable BDAT size ends the session by design
            before = connection_view(self.server)
            self.server.receive_data(line + ending)
            event = self.server.next_event()
            assert self.server.next_event() is PAUSED
            # RFC 5321 2.3.8: the line ends at CRLF (a bare LF is tolerated).
            line = line.removesuffix(b"\r") if ending == b"\n" else line
            if not verb_is_known(line):
                assert isinstance(event, CommandError), (line, event)
            if isinstance(event, CommandError):
                assert event.reply.code // 100 in (4, 5), event
                assert line.startswith(event.line), (line, event)
                reply = event.reply
            else:
                assert isinstance(event, COMMANDS), event
                reply = Reply(502, "not from you")
            self.server.send(reply)
            assert connection_view(self.server) == before
            assert self.server.next_event() is NEED_DATA

    def out_of_turn(self, data: st.DataObject) -> None:
        """Rarely: the client closes, the server closes, or the server sends
        an unsolicited 421 (RFC 5321 3.8). Otherwise a call that is not
        allowed now must raise LocalProtocolError and change nothing: a reply
        when nothing awaits one, tls_started() outside a handshake (RFC 3207
        section 4.2)."""
        roll = data.draw(between(0, 19), label="roll")
        closed = self.conv.state is State.CLOSED
        handshake = self.conv.state is State.TLS_HANDSHAKE
        if roll == 0 and not closed and not handshake:
            assert self.client.send(ConnectionClosed()) == b""
            self.client_closed = True
            self.server.receive_data(b"")
            self._drain_server()
            if self.server.state is not State.CLOSED:
                assert self.server.send(ConnectionClosed()) == b""  # the application gives up
            assert self.server.next_event() == ConnectionClosed()
            self._close()
        elif roll == 1 and not closed and not handshake:
            assert self.server.send(ConnectionClosed()) == b""
            self.client.receive_data(b"")
            assert self._drain_client() == [ConnectionClosed()]
            self._close()
        elif roll == 2 and not closed and not handshake:
            self._server_sends(Reply(421, "shutting down"), data.draw(wire_pieces))
        elif roll < 11 and self.owed is None:
            self._server_sends(Reply(250, "nobody asked"), 0)
        elif not handshake:
            connection = self.client if roll % 2 else self.server
            before = connection_view(connection)
            try:
                connection.tls_started()
            except LocalProtocolError:
                pass
            else:
                raise AssertionError("tls_started() was accepted outside a TLS handshake")
            assert connection_view(connection) == before

    # -- invariants

    @invariant()
    def engines_agree_with_each_other_and_the_model(self) -> None:
        """RFC 5321 4.1.4 and RFC 2920: both sides move on the same replies,
        so they always agree on where the conversation is."""
        if not self.ready:
            return
        client, server, conv = self.client, self.server, self.conv
        assert client.state is server.state is conv.state, (
            client.state,
            server.state,
            conv.state,
        )
        assert client.tls == server.tls == conv.tls
        assert client.authenticated == server.authenticated == conv.authenticated
        assert client.transaction == server.transaction == conv.mail
        assert client.recipients == server.recipients == conv.recipients
        if conv.extensions is None:
            assert client.extensions is None and server.extensions is None
        else:
            assert client.extensions is not None and server.extensions is not None
            assert dict(client.extensions.keywords) == conv.extensions
            assert dict(server.extensions.keywords) == conv.extensions
        if conv.state is not State.CLOSED:
            pending = [command for command in self.pending if command is not GREETING]
            assert len(client.pending) == len(pending)
            assert all(a is b for a, b in zip(client.pending, pending, strict=True)), client.pending

    @invariant()
    def server_holds_nothing_back(self) -> None:
        """RFC 2920 section 3: a pipelining server reads ahead but answers in
        order; when it owes nothing, no complete command sits unread."""
        if self.ready:
            assert not self.unsent
        if self.ready and self.owed is None and self.server_queue:
            assert not self.server_queue[0].complete, self.server_queue[0]


EnginesBackToBack.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    # One failure at a time, and no explain phase: shrinking a state machine
    # is slow enough already.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEnginesBackToBack = EnginesBackToBack.TestCase

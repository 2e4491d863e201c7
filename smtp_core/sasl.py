# Sans-I/O SASL mechanisms (RFC 4422) for both roles, for SMTP AUTH (RFC 4954).
#
# Every mechanism is a small state machine over raw payload bytes. The SMTP
# layer owns RFC 4954's base64, the "334" continuations and the 235/535
# replies; this module only says what to send next and how it ended.
#
# Two decisions a reader must know:
#
# - Faults are split by who made them. A client mechanism raises SaslError
#   when the server breaks the mechanism or fails mutual authentication (the
#   SCRAM server signature); the SMTP client then cancels with "*". A server
#   mechanism never raises on what a client sends: every move is a `Step`, a
#   challenge or a final outcome with a reason, so arbitrary bytes cost a
#   failed Step. SaslError on the server side means the application misused
#   the API (a call out of order, a verifier that returned unusable keys).
# - A server asks the application for exactly the secret each mechanism needs,
#   through small callback protocols: a password check (PLAIN, LOGIN), the
#   plaintext password (CRAM-MD5 cannot do without it), SCRAM keys (never a
#   password), a token check (XOAUTH2, OAUTHBEARER), an EXTERNAL check. There
#   is no clock and no I/O; nonces come from an injectable generator.
from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Protocol

from ._util import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "MAX_SCRAM_ITERATIONS",
    "MECHANISMS",
    "ClientMechanism",
    "CramMd5",
    "CramMd5Server",
    "External",
    "ExternalChecker",
    "ExternalServer",
    "Login",
    "LoginServer",
    "NonceFactory",
    "OAuthBearer",
    "OAuthBearerServer",
    "PasswordChecker",
    "PasswordLookup",
    "Plain",
    "PlainServer",
    "SaslError",
    "ScramCredentials",
    "ScramLookup",
    "ScramSha1",
    "ScramSha1Server",
    "ScramSha256",
    "ScramSha256Server",
    "ServerMechanism",
    "Step",
    "TokenChecker",
    "AuthorizationChecker",
    "Verifiers",
    "XOAuth2",
    "XOAuth2Server",
    "client_mechanism",
    "saslprep",
    "scram_credentials",
    "server_mechanism",
    "strongest",
]

MECHANISMS: Final = (
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "CRAM-MD5",
    "PLAIN",
    "LOGIN",
    "OAUTHBEARER",
    "XOAUTH2",
    "EXTERNAL",
)
"""Every mechanism this module implements; password mechanisms strongest first."""

MAX_SCRAM_ITERATIONS: Final = 1_000_000
"""The highest SCRAM iteration count a client accepts from a server. Each
iteration is one HMAC, so an unbounded count would let a server make the client
spin (a denial of service); real servers use 4096 to a few hundred thousand."""

_PASSWORD_MECHANISMS: Final = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")
_TOKEN_MECHANISMS: Final = ("OAUTHBEARER", "XOAUTH2")
_MIN_SCRAM_ITERATIONS: Final = 4096  # RFC 5802 section 5.1, RFC 7677 section 4


class SaslError(ProtocolError):
    """A SASL exchange cannot go on.

    Raised by a client mechanism when the server's challenge is malformed, when
    the server reports an error the mechanism cannot answer, or when the server
    fails mutual authentication (a SCRAM server signature that does not
    verify); the SMTP client should then cancel the exchange with "*".
    Also raised for the caller's own mistakes: unusable credentials, a method
    called out of order, a verifier that returned unusable data.
    """


# --- SASLprep (RFC 4013) ------------------------------------------------------


def _is_prohibited(char: str) -> bool:
    # RFC 4013 section 2.3: tables C.1.2, C.2.1, C.2.2, C.3 to C.9 of RFC 3454.
    return (
        stringprep.in_table_c12(char)
        or stringprep.in_table_c21_c22(char)
        or stringprep.in_table_c3(char)
        or stringprep.in_table_c4(char)
        or stringprep.in_table_c5(char)
        or stringprep.in_table_c6(char)
        or stringprep.in_table_c7(char)
        or stringprep.in_table_c8(char)
        or stringprep.in_table_c9(char)
    )


def saslprep(text: str, *, allow_unassigned: bool = False) -> str:
    """Prepare a user name or a password with SASLprep (RFC 4013).

    Maps non-ASCII spaces to U+0020 and drops the characters "commonly mapped
    to nothing" (section 2.1), normalises with NFKC over Unicode 3.2 (section
    2.2), refuses prohibited characters (section 2.3) and strings that break
    the bidirectional rules of RFC 3454 section 6 (section 2.4).

    ``allow_unassigned`` selects the "query" flavour of RFC 3454 section 7, in
    which code points unassigned in Unicode 3.2 pass; "stored strings" (the
    default) refuse them.

    Raises SaslError naming the offending code point.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in text
        if not stringprep.in_table_b1(char)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for char in prepared:
        if _is_prohibited(char):
            raise SaslError(f"SASLprep: prohibited code point U+{ord(char):04X} (RFC 4013 2.3)")
        if not allow_unassigned and stringprep.in_table_a1(char):
            raise SaslError(f"SASLprep: unassigned code point U+{ord(char):04X} (RFC 4013 2.5)")
    if any(stringprep.in_table_d1(char) for char in prepared) and (
        any(stringprep.in_table_d2(char) for char in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        raise SaslError("SASLprep: right-to-left text breaks the bidi rules (RFC 3454 6)")
    return prepared


def _prepared(text: str, *, allow_unassigned: bool = True) -> str | None:
    """``saslprep`` for text from the peer: None where the text is refused,
    or prepares to nothing (RFC 4616 section 2: "If preparation fails or
    results in an empty string, verification SHALL fail")."""
    try:
        return saslprep(text, allow_unassigned=allow_unassigned) or None
    except SaslError:
        return None


# --- shared helpers -------------------------------------------------------------

# RFC 5802 section 7: printable ASCII except ",".
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
# RFC 5802 section 7: saslname, with "," and "=" escaped as "=2C" and "=3D".
_SASLNAME = re.compile(r"(?:[^\x00=,]|=2C|=3D)+")
# RFC 6750 section 2.1.
_B64TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_BEARER = re.compile(rb"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
# RFC 2195 section 2: the challenge is a msg-id, "<" ... ">".
_MSG_ID = re.compile(rb"<[\x21-\x3d\x3f-\x7e]+>")


def _escape_saslname(name: str) -> str:
    # "=" first, so that the "=" of "=2C" is not escaped again.
    return name.replace("=", "=3D").replace(",", "=2C")


def _unescape_saslname(text: str) -> str | None:
    if not _SASLNAME.fullmatch(text):
        return None
    return text.replace("=2C", ",").replace("=3D", "=")


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json_object(fields: Iterable[tuple[str, str]]) -> bytes:
    # The OAuth error challenges (RFC 7628 section 3.2.2) are tiny JSON
    # objects of strings; writing them by hand keeps the json module out.
    def quote(text: str) -> str:
        escaped = "".join(
            "\\" + char if char in '"\\' else f"\\u{ord(char):04x}" if char < " " else char
            for char in text
        )
        return f'"{escaped}"'

    body = ",".join(f"{quote(key)}:{quote(value)}" for key, value in fields)
    return ("{" + body + "}").encode("utf-8")


def _snippet(data: bytes) -> str:
    return repr(data[:40]) + ("..." if len(data) > 40 else "")


# --- server side: steps and verifiers ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One move of a server mechanism: a challenge to send, or the outcome.

    - ``challenge`` is not None: send it (as a 334 continuation) and pass the
      client's answer to ``step``. Empty bytes are a valid, empty challenge.
    - ``challenge`` is None: the exchange is over. ``success`` says how;
      ``authcid`` is the authenticated user and ``authzid`` the identity the
      client asked to act as (None when it asked for none, so act as
      ``authcid``). On failure ``reason`` says why, for logs (not for the
      client), and ``is_malformed`` says whether the client broke the
      mechanism's syntax (RFC 4954 suggests 501) rather than presenting wrong
      credentials (535).
    """

    challenge: bytes | None = None
    success: bool = False
    authcid: str | None = None
    authzid: str | None = None
    reason: str | None = None
    is_malformed: bool = False

    def __post_init__(self) -> None:
        if self.challenge is not None:
            if self.success or self.reason is not None or self.is_malformed:
                raise SaslError("a Step with a challenge carries no outcome")
        elif self.success:
            if self.reason is not None or self.is_malformed:
                raise SaslError("a successful Step has no failure reason")
        elif self.reason is None:
            raise SaslError("a failed Step needs a reason")

    @property
    def is_final(self) -> bool:
        """True when the exchange is over (no challenge to send)."""
        return self.challenge is None

    @classmethod
    def continue_with(cls, challenge: bytes) -> Step:
        """A challenge to send to the client."""
        return cls(challenge=challenge)

    @classmethod
    def succeed(cls, authcid: str | None, authzid: str | None = None) -> Step:
        """Authentication succeeded for ``authcid``, acting as ``authzid``."""
        return cls(success=True, authcid=authcid, authzid=authzid)

    @classmethod
    def fail(cls, reason: str, *, authcid: str | None = None, is_malformed: bool = False) -> Step:
        """Authentication failed, for ``reason``."""
        return cls(authcid=authcid, reason=reason, is_malformed=is_malformed)


def _malformed(reason: str, *, authcid: str | None = None) -> Step:
    return Step.fail(reason, authcid=authcid, is_malformed=True)


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a SCRAM server stores for a user (RFC 5802 section 3): never the
    password, only the salt, the iteration count and two keys derived from it.
    Build them with ``scram_credentials``. The keys are specific to one hash:
    SCRAM-SHA-1 and SCRAM-SHA-256 need separate credentials."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __post_init__(self) -> None:
        if not self.salt:
            raise SaslError("ScramCredentials: the salt is empty")
        if self.iterations < 1:
            raise SaslError(f"ScramCredentials: iteration count {self.iterations} is below 1")
        if not self.stored_key or len(self.stored_key) != len(self.server_key):
            raise SaslError("ScramCredentials: keys are empty or of different lengths")


class PasswordChecker(Protocol):
    """``check_password(authcid, password, authzid) -> bool``, for PLAIN and LOGIN.

    ``authcid`` and ``password`` arrive prepared with SASLprep unless the server
    mechanism was built with ``prepare=False``; ``authzid`` is "" when the
    client asked for none. Return True only if the password is right and the
    user may act as ``authzid``."""

    def __call__(self, authcid: str, password: str, authzid: str, /) -> bool: ...


class PasswordLookup(Protocol):
    """``lookup_password(authcid) -> str | None``, for CRAM-MD5: the user's
    plaintext password, or None for an unknown user. CRAM-MD5 keys an HMAC
    with the password itself, so the server must hold it in a recoverable
    form; prefer SCRAM, which needs no such thing."""

    def __call__(self, authcid: str, /) -> str | None: ...


class ScramLookup(Protocol):
    """``lookup_scram(authcid) -> ScramCredentials | None``, for one SCRAM
    mechanism: the user's credentials for that mechanism's hash, or None for
    an unknown user."""

    def __call__(self, authcid: str, /) -> ScramCredentials | None: ...


class TokenChecker(Protocol):
    """``check_token(authcid, token) -> bool``, for XOAUTH2 and OAUTHBEARER:
    whether the OAuth 2.0 bearer token is valid for the user. ``authcid`` is ""
    when an OAUTHBEARER client named no user and the token alone says who."""

    def __call__(self, authcid: str, token: str, /) -> bool: ...


class ExternalChecker(Protocol):
    """``check_external(authzid) -> bool``, for EXTERNAL: whether the
    credentials established outside SASL (a TLS client certificate, say) may
    act as ``authzid``; "" means "as whoever those credentials name"."""

    def __call__(self, authzid: str, /) -> bool: ...


class AuthorizationChecker(Protocol):
    """``authorize(authcid, authzid) -> bool``: whether the authenticated user
    may act as another identity. Asked by SCRAM when the client names an
    authzid other than its own user name; without one such requests fail."""

    def __call__(self, authcid: str, authzid: str, /) -> bool: ...


class NonceFactory(Protocol):
    """A source of fresh nonces: printable ASCII without ",", unpredictable.
    The default is ``secrets.token_urlsafe``."""

    def __call__(self) -> str: ...


# --- base classes --------------------------------------------------------------------


class ClientMechanism(ABC):
    """The client side of one SASL mechanism.

    Drive it from the SMTP client: send ``initial_response()`` with AUTH when
    it is not None, then answer each 334 challenge with ``respond``. Accept a
    235 only when ``is_complete`` is True: for SCRAM that is what proves the
    server knew the user's keys (mutual authentication).
    """

    name: ClassVar[str] = ""
    """The mechanism's registered name, as in "AUTH SCRAM-SHA-256"."""

    @abstractmethod
    def initial_response(self) -> bytes | None:
        """The bytes to send with the AUTH command, or None when the mechanism
        has none (LOGIN, CRAM-MD5).

        Calling it means the bytes are sent. A client that holds them back
        (RFC 4954 section 4 lets it wait for an empty challenge instead, say
        when the AUTH line would be too long) does not call it: ``respond``
        then gives the same bytes. Calling it twice raises SaslError.
        """
        ...

    @abstractmethod
    def respond(self, challenge: bytes) -> bytes:
        """The answer to a server challenge (raw bytes, already un-base64ed).

        Raises SaslError when the challenge is malformed, when the server
        reports an error or fails to prove itself, or when no challenge was
        expected now; the exchange is then over.
        """
        ...

    @property
    @abstractmethod
    def is_complete(self) -> bool:
        """True when this side has sent all it must and verified all it can,
        so that a success reply from the server can be accepted."""
        ...


class ServerMechanism(ABC):
    """The server side of one SASL mechanism.

    Call ``start`` once with the AUTH command's initial response (None when
    there was none, b"" for RFC 4954's "="), then ``step`` with each client
    answer while the returned ``Step`` carries a challenge. Client bytes never
    raise: they give a failed ``Step``. SaslError means a call out of order.
    """

    name: ClassVar[str] = ""
    """The mechanism's registered name, as advertised in the EHLO AUTH line."""

    def __init__(self) -> None:
        self._started = False
        self._outcome: Step | None = None

    def start(self, initial_response: bytes | None) -> Step:
        """Begin the exchange; ``initial_response`` is what came with AUTH."""
        if self._started:
            raise SaslError(f"{self.name}: start() was already called")
        self._started = True
        return self._record(self._start(initial_response))

    def step(self, response: bytes) -> Step:
        """Take the client's answer to the last challenge."""
        if not self._started:
            raise SaslError(f"{self.name}: call start() before step()")
        if self._outcome is not None:
            raise SaslError(f"{self.name}: the exchange is over")
        return self._record(self._step(response))

    @property
    def is_complete(self) -> bool:
        """True once a final Step (success or failure) has been returned."""
        return self._outcome is not None

    @property
    def outcome(self) -> Step | None:
        """The final Step, once there is one."""
        return self._outcome

    def _record(self, step: Step) -> Step:
        if step.is_final:
            self._outcome = step
        return step

    @abstractmethod
    def _start(self, initial_response: bytes | None) -> Step: ...

    @abstractmethod
    def _step(self, response: bytes) -> Step: ...


# --- one-message client mechanisms: PLAIN, EXTERNAL, XOAUTH2, OAUTHBEARER -----------


class _OneMessageClient(ClientMechanism):
    """A mechanism whose client says everything in one message."""

    def __init__(self) -> None:
        self._sent = False

    @abstractmethod
    def _message(self) -> bytes: ...

    def initial_response(self) -> bytes:
        if self._sent:
            raise SaslError(f"{self.name}: the message was already sent")
        self._sent = True
        return self._message()

    def respond(self, challenge: bytes) -> bytes:
        if not self._sent:
            # RFC 4422 section 5: the server's (normally empty) challenge
            # asks for the initial response that was held back.
            self._sent = True
            return self._message()
        return self._after_message(challenge)

    def _after_message(self, challenge: bytes) -> bytes:
        raise SaslError(
            f"{self.name}: unexpected challenge {_snippet(challenge)} after the message"
        )

    @property
    def is_complete(self) -> bool:
        return self._sent


class Plain(_OneMessageClient):
    """PLAIN (RFC 4616): ``authzid NUL authcid NUL password`` in UTF-8.

    The strings go out as given: RFC 4616 section 2 puts SASLprep on the
    server's comparison, and ``PlainServer`` applies it. Only use PLAIN over
    TLS. Raises SaslError for an empty user name or password or a NUL inside
    any field.
    """

    name = "PLAIN"

    def __init__(self, username: str, password: str, *, authzid: str = "") -> None:
        super().__init__()
        if not username or not password:
            raise SaslError("PLAIN: the user name and the password must not be empty")
        if "\x00" in username + password + authzid:
            raise SaslError("PLAIN: NUL inside a field (RFC 4616 section 2)")
        self._payload = f"{authzid}\x00{username}\x00{password}".encode()

    def _message(self) -> bytes:
        return self._payload


class External(_OneMessageClient):
    """EXTERNAL (RFC 4422 appendix A): authenticate with credentials set up
    outside SASL (a TLS client certificate); the message is the authorization
    identity, or empty to act as whoever those credentials name."""

    name = "EXTERNAL"

    def __init__(self, authzid: str = "") -> None:
        super().__init__()
        if "\x00" in authzid:
            raise SaslError("EXTERNAL: NUL inside the authorization identity")
        self._payload = authzid.encode()

    def _message(self) -> bytes:
        return self._payload


def _token_bytes(mechanism: str, token: str) -> bytes:
    encoded = token.encode("ascii", "replace")
    if not _B64TOKEN.fullmatch(encoded):
        raise SaslError(f"{mechanism}: the token is not an RFC 6750 b64token")
    return encoded


class _TokenClient(_OneMessageClient):
    """XOAUTH2 and OAUTHBEARER: one message; a JSON error challenge is
    recorded in ``error`` and answered with ``_error_answer``."""

    _payload: bytes
    _error_answer: bytes = b""
    error: str | None

    def _message(self) -> bytes:
        return self._payload

    def _after_message(self, challenge: bytes) -> bytes:
        if self.error is not None or not challenge:
            return super()._after_message(challenge)
        self.error = challenge.decode("utf-8", "replace")
        return self._error_answer


class XOAuth2(_TokenClient):
    """XOAUTH2 (Google's OAuth 2.0 mechanism for IMAP and SMTP).

    The message is ``user=USER ^A auth=Bearer TOKEN ^A ^A``. When the token is
    refused the server sends a JSON error as a challenge; ``respond`` records it
    in ``error`` and answers with the empty response the server then expects,
    after which the server replies 535.
    """

    name = "XOAUTH2"

    def __init__(self, username: str, token: str) -> None:
        super().__init__()
        if not username or any(char in username for char in "\x00\x01"):
            raise SaslError("XOAUTH2: the user name is empty or holds ^A or NUL")
        token_bytes = _token_bytes(self.name, token)
        self._payload = (
            b"user=" + username.encode() + b"\x01auth=Bearer " + token_bytes + b"\x01\x01"
        )
        self.error: str | None = None
        """The server's JSON error, as text, once it has sent one."""


class OAuthBearer(_TokenClient):
    """OAUTHBEARER (RFC 7628 section 3.1).

    The message is the GS2 header ``n,a=USER,`` (no channel binding), then
    ``^A`` and the key-value pairs ``host=``, ``port=`` (when given) and
    ``auth=Bearer TOKEN``, each ended by ``^A``, then a final ``^A``. An empty
    ``username`` leaves the user to the token. When the token is refused the
    server sends a JSON error (section 3.2.2); ``respond`` records it in
    ``error`` and answers with the single ``^A`` the server expects.
    """

    name = "OAUTHBEARER"

    def __init__(
        self, username: str, token: str, *, host: str | None = None, port: int | None = None
    ) -> None:
        super().__init__()
        if any(char in username for char in "\x00\x01"):
            raise SaslError("OAUTHBEARER: the user name holds ^A or NUL")
        if host is not None and not re.fullmatch(r"[\x21-\x7e]+", host):
            raise SaslError(f"OAUTHBEARER: invalid host {host!r}")
        if port is not None and not 0 < port < 65536:
            raise SaslError(f"OAUTHBEARER: invalid port {port}")
        token_bytes = _token_bytes(self.name, token)
        authzid = f"a={_escape_saslname(username)}" if username else ""
        pairs = b""
        if host is not None:
            pairs += b"host=" + host.encode("ascii") + b"\x01"
        if port is not None:
            pairs += b"port=%d\x01" % port
        pairs += b"auth=Bearer " + token_bytes + b"\x01"
        self._payload = f"n,{authzid},".encode() + b"\x01" + pairs + b"\x01"
        self.error: str | None = None
        """The server's JSON error, as text, once it has sent one."""

    _error_answer = b"\x01"


# --- LOGIN and CRAM-MD5 clients ----------------------------------------------------


class Login(ClientMechanism):
    """LOGIN (draft-murchison-sasl-login): the user name, then the password,
    each in answer to a challenge. The challenge text ("Username:",
    "Password:") is not checked: servers word it differently, and only the
    order counts. Only use LOGIN over TLS."""

    name = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        self._answers = (username.encode(), password.encode())
        self._answered = 0

    def initial_response(self) -> None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if self._answered == len(self._answers):
            raise SaslError(f"LOGIN: unexpected third challenge {_snippet(challenge)}")
        answer = self._answers[self._answered]
        self._answered += 1
        return answer

    @property
    def is_complete(self) -> bool:
        return self._answered == len(self._answers)


class CramMd5(ClientMechanism):
    """CRAM-MD5 (RFC 2195): the answer to the server's ``<msg-id>`` challenge is
    the user name, a space and the hex HMAC-MD5 of the challenge keyed with the
    password. The password is prepared with SASLprep (query strings), as
    ``CramMd5Server`` does to the one it looks up; ASCII passwords are left as
    they are. CRAM-MD5 is obsolete: prefer SCRAM."""

    name = "CRAM-MD5"

    def __init__(self, username: str, password: str) -> None:
        if not username:
            raise SaslError("CRAM-MD5: the user name is empty")
        self._username = username.encode()
        self._key = saslprep(password, allow_unassigned=True).encode()
        self._answered = False

    def initial_response(self) -> None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if self._answered:
            raise SaslError(f"CRAM-MD5: unexpected second challenge {_snippet(challenge)}")
        if not _MSG_ID.fullmatch(challenge):
            raise SaslError(
                f"CRAM-MD5: challenge {_snippet(challenge)} is not a <msg-id> (RFC 2195 section 2)"
            )
        self._answered = True
        digest = hmac.new(self._key, challenge, "md5").hexdigest()
        return self._username + b" " + digest.encode("ascii")

    @property
    def is_complete(self) -> bool:
        return self._answered


# --- SCRAM (RFC 5802, RFC 7677) -------------------------------------------------------


def _hash_name(name: str) -> str:
    canonical = name.lower().replace("-", "")
    if canonical not in ("sha1", "sha256"):
        raise SaslError(f"SCRAM: unsupported hash {name!r} (use 'sha1' or 'sha256')")
    return canonical


def _scram_keys(
    password: bytes, salt: bytes, iterations: int, hash_name: str
) -> tuple[bytes, bytes]:
    """ClientKey and ServerKey (RFC 5802 section 3)."""
    salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    return client_key, server_key


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def scram_credentials(
    password: str, salt: bytes, iterations: int = _MIN_SCRAM_ITERATIONS, hash_name: str = "sha256"
) -> ScramCredentials:
    """Derive what a SCRAM server stores for a password (RFC 5802 section 3).

    ``password`` is prepared with SASLprep as a stored string, as section 2.2
    requires (SaslError if it cannot be). ``salt`` should be random, 16 bytes
    or more (``secrets.token_bytes(16)``); ``iterations`` at least 4096 (RFC
    7677 section 4); ``hash_name`` is "sha1" or "sha256".
    """
    digest = _hash_name(hash_name)
    client_key, server_key = _scram_keys(saslprep(password).encode(), salt, iterations, digest)
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(digest, client_key).digest(),
        server_key=server_key,
    )


_SERVER_FIRST = re.compile(
    r"r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+),s=(?P<salt>[^,]+),i=(?P<iterations>[1-9][0-9]{0,9})"
    r"(?:,[A-Za-z]=[^,]*)*"
)
_SERVER_FINAL = re.compile(r"(?:v=(?P<verifier>[^,]+)|e=(?P<error>[^,]*))(?:,[A-Za-z]=[^,]*)*")
_GS2_HEADER = re.compile(r"(?P<flag>n|y|p=[^,]*),(?:a=(?P<authzid>[^,]*))?,")
_CLIENT_FIRST_BARE = re.compile(
    r"n=(?P<user>[^,]*),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)(?:,[A-Za-z]=[^,]*)*"
)
_CLIENT_FINAL = re.compile(
    r"c=(?P<binding>[^,]+),r=(?P<nonce>[^,]+)(?:,[A-Za-oq-z]=[^,]*)*,p=(?P<proof>[^,]+)"
)


class _ScramClientState(enum.Enum):
    START = enum.auto()
    AWAIT_SERVER_FIRST = enum.auto()
    AWAIT_SERVER_FINAL = enum.auto()
    COMPLETE = enum.auto()
    FAILED = enum.auto()


class _ScramClient(ClientMechanism):
    _hash: ClassVar[str] = ""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        authzid: str = "",
        nonce: str | None = None,
        min_iterations: int = _MIN_SCRAM_ITERATIONS,
    ) -> None:
        # RFC 5802 section 5.1: the user name is a query string, the password
        # (section 2.2, Normalize) a stored string.
        user = saslprep(username, allow_unassigned=True)
        if not user:
            raise SaslError(f"{self.name}: the user name is empty after SASLprep")
        if "\x00" in authzid:
            raise SaslError(f"{self.name}: NUL inside the authorization identity")
        self._password = saslprep(password).encode()
        self._nonce = secrets.token_urlsafe() if nonce is None else nonce
        if not _NONCE.fullmatch(self._nonce):
            raise SaslError(f"{self.name}: a nonce is printable ASCII without ','")
        if not 1 <= min_iterations <= MAX_SCRAM_ITERATIONS:
            raise SaslError(f"{self.name}: min_iterations {min_iterations} is out of range")
        self._min_iterations = min_iterations
        self._gs2_header = f"n,{'a=' + _escape_saslname(authzid) if authzid else ''},"
        self._client_first_bare = f"n={_escape_saslname(user)},r={self._nonce}"
        self._server_signature = b""
        self._state = _ScramClientState.START
        self.error: str | None = None
        """The server's "e=" error (RFC 5802 section 7), once it has sent one."""

    def initial_response(self) -> bytes:
        if self._state is not _ScramClientState.START:
            raise SaslError(f"{self.name}: the client-first-message was already sent")
        self._state = _ScramClientState.AWAIT_SERVER_FIRST
        return (self._gs2_header + self._client_first_bare).encode()

    def respond(self, challenge: bytes) -> bytes:
        state = self._state
        if state is _ScramClientState.START:
            return self.initial_response()
        try:
            if state is _ScramClientState.AWAIT_SERVER_FIRST:
                return self._client_final(challenge)
            if state is _ScramClientState.AWAIT_SERVER_FINAL:
                return self._verify_server(challenge)
        except SaslError:
            self._state = _ScramClientState.FAILED
            raise
        raise SaslError(f"{self.name}: unexpected challenge {_snippet(challenge)}, exchange over")

    @property
    def is_complete(self) -> bool:
        return self._state is _ScramClientState.COMPLETE

    def _client_final(self, challenge: bytes) -> bytes:
        text = _utf8(challenge)
        if text is None:
            raise SaslError(f"{self.name}: server-first-message is not UTF-8")
        if text.startswith("m="):
            raise SaslError(f"{self.name}: server requires an unsupported extension (RFC 5802 5.1)")
        if text.startswith("e="):
            self.error = text[2:]
            raise SaslError(f"{self.name}: server error {self.error!r}")
        match = _SERVER_FIRST.fullmatch(text)
        if match is None:
            raise SaslError(f"{self.name}: malformed server-first-message {_snippet(challenge)}")
        nonce = match["nonce"]
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SaslError(f"{self.name}: server nonce does not extend the client nonce")
        salt = _b64decode(match["salt"])
        if not salt:
            raise SaslError(f"{self.name}: the salt is not base64 or is empty")
        iterations = int(match["iterations"])
        if not self._min_iterations <= iterations <= MAX_SCRAM_ITERATIONS:
            raise SaslError(
                f"{self.name}: iteration count {iterations} is outside"
                f" {self._min_iterations}..{MAX_SCRAM_ITERATIONS}"
            )
        client_key, server_key = _scram_keys(self._password, salt, iterations, self._hash)
        stored_key = hashlib.new(self._hash, client_key).digest()
        without_proof = f"c={_b64encode(self._gs2_header.encode())},r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        proof = _xor(client_key, hmac.digest(stored_key, auth_message, self._hash))
        self._server_signature = hmac.digest(server_key, auth_message, self._hash)
        self._state = _ScramClientState.AWAIT_SERVER_FINAL
        return f"{without_proof},p={_b64encode(proof)}".encode()

    def _verify_server(self, challenge: bytes) -> bytes:
        text = _utf8(challenge)
        match = None if text is None else _SERVER_FINAL.fullmatch(text)
        if match is None:
            raise SaslError(f"{self.name}: malformed server-final-message {_snippet(challenge)}")
        if match["error"] is not None:
            self.error = match["error"]
            raise SaslError(f"{self.name}: server error {self.error!r}")
        signature = _b64decode(match["verifier"])
        if signature is None or not hmac.compare_digest(signature, self._server_signature):
            raise SaslError(f"{self.name}: the server signature does not verify (RFC 5802 9)")
        self._state = _ScramClientState.COMPLETE
        # RFC 4954 section 4 has no success-with-data: the server-final came
        # as a challenge and is acknowledged with an empty response.
        return b""


class ScramSha1(_ScramClient):
    """SCRAM-SHA-1 (RFC 5802), without channel binding (GS2 header "n,,").

    The server must prove it holds the user's keys: ``respond`` raises
    SaslError when its signature does not verify, and ``is_complete`` turns True
    only after it did. ``nonce`` is for tests (the default is random);
    ``min_iterations`` is the lowest iteration count accepted from the server
    (counts above MAX_SCRAM_ITERATIONS are always refused)."""

    name = "SCRAM-SHA-1"
    _hash = "sha1"


class ScramSha256(_ScramClient):
    """SCRAM-SHA-256 (RFC 7677), without channel binding; see ``ScramSha1``."""

    name = "SCRAM-SHA-256"
    _hash = "sha256"


# --- server mechanisms -----------------------------------------------------------------


def _maybe_prepared(raw: str, prepare: bool) -> str | None:
    return _prepared(raw) if prepare else raw


class PlainServer(ServerMechanism):
    """PLAIN (RFC 4616) server: parses ``authzid NUL authcid NUL password`` and
    asks ``check_password``. With ``prepare`` (the default) the user name and
    password are prepared with SASLprep first, as RFC 4616 section 2
    recommends, so compare with a password prepared the same way."""

    name = "PLAIN"

    def __init__(self, check_password: PasswordChecker, *, prepare: bool = True) -> None:
        super().__init__()
        self._check_password = check_password
        self._prepare = prepare

    def _start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Step.continue_with(b"")
        return self._verify(initial_response)

    def _step(self, response: bytes) -> Step:
        return self._verify(response)

    def _verify(self, message: bytes) -> Step:
        fields = message.split(b"\x00")
        if len(fields) != 3:
            return _malformed("PLAIN message needs exactly two NULs (RFC 4616 section 2)")
        texts = [_utf8(field) for field in fields]
        authzid, raw_authcid, raw_password = texts
        if authzid is None or raw_authcid is None or raw_password is None:
            return _malformed("PLAIN message is not UTF-8")
        if not raw_authcid or not raw_password:
            return _malformed("PLAIN user name or password is empty")
        authcid = _maybe_prepared(raw_authcid, self._prepare)
        password = _maybe_prepared(raw_password, self._prepare)
        if authcid is None or password is None:
            return _malformed("PLAIN user name or password refused by SASLprep")
        if not self._check_password(authcid, password, authzid):
            return Step.fail("invalid credentials", authcid=authcid)
        return Step.succeed(authcid, authzid or None)


class _LoginState(enum.Enum):
    USERNAME = enum.auto()
    PASSWORD = enum.auto()


class LoginServer(ServerMechanism):
    """LOGIN server: prompts for the user name, then the password, and asks
    ``check_password`` (with "" as authzid). An initial response is taken as
    the user name, as many clients send it. ``prepare`` as for PlainServer."""

    name = "LOGIN"

    def __init__(
        self,
        check_password: PasswordChecker,
        *,
        prepare: bool = True,
        username_prompt: bytes = b"Username:",
        password_prompt: bytes = b"Password:",
    ) -> None:
        super().__init__()
        self._check_password = check_password
        self._prepare = prepare
        self._prompts = (username_prompt, password_prompt)
        self._state = _LoginState.USERNAME
        self._authcid = ""

    def _start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Step.continue_with(self._prompts[0])
        return self._step(initial_response)

    def _step(self, response: bytes) -> Step:
        text = _utf8(response)
        if self._state is _LoginState.USERNAME:
            authcid = None if not text else _maybe_prepared(text, self._prepare)
            if authcid is None:
                return _malformed("LOGIN user name is empty, not UTF-8 or refused by SASLprep")
            self._authcid = authcid
            self._state = _LoginState.PASSWORD
            return Step.continue_with(self._prompts[1])
        password = None if not text else _maybe_prepared(text, self._prepare)
        if password is None:
            return _malformed(
                "LOGIN password is empty, not UTF-8 or refused by SASLprep", authcid=self._authcid
            )
        if not self._check_password(self._authcid, password, ""):
            return Step.fail("invalid credentials", authcid=self._authcid)
        return Step.succeed(self._authcid)


class CramMd5Server(ServerMechanism):
    """CRAM-MD5 (RFC 2195) server. The challenge is ``<NONCE@hostname>``;
    ``lookup_password`` must return the user's plaintext password (CRAM-MD5
    keys its HMAC with it), which is prepared with SASLprep as the client
    does. Prefer SCRAM, which keeps no recoverable password."""

    name = "CRAM-MD5"

    def __init__(
        self,
        lookup_password: PasswordLookup,
        *,
        hostname: str = "localhost",
        nonce: NonceFactory = secrets.token_urlsafe,
    ) -> None:
        super().__init__()
        self._lookup_password = lookup_password
        self._hostname = hostname
        self._nonce = nonce
        self._challenge = b""

    def _start(self, initial_response: bytes | None) -> Step:
        if initial_response is not None:
            return _malformed("CRAM-MD5 takes no initial response")
        challenge = f"<{self._nonce()}@{self._hostname}>".encode()
        if not _MSG_ID.fullmatch(challenge):
            raise SaslError(f"CRAM-MD5: the nonce or hostname makes a bad msg-id {challenge!r}")
        self._challenge = challenge
        return Step.continue_with(challenge)

    def _step(self, response: bytes) -> Step:
        text = _utf8(response)
        user, space, digest = ("", "", "") if text is None else text.rpartition(" ")
        if not space or not user or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
            return _malformed("CRAM-MD5 answer is not 'user digest' (RFC 2195 section 2)")
        authcid = _prepared(user)
        if authcid is None:
            return _malformed("CRAM-MD5 user name refused by SASLprep")
        password = self._lookup_password(authcid)
        if password is None:
            return Step.fail("unknown user", authcid=authcid)
        key = _prepared(password)
        if key is None:
            return Step.fail("stored password refused by SASLprep", authcid=authcid)
        expected = hmac.new(key.encode(), self._challenge, "md5").hexdigest()
        if not hmac.compare_digest(expected, digest.lower()):
            return Step.fail("invalid credentials", authcid=authcid)
        return Step.succeed(authcid)


# A key of this process for the fake salts of unknown SCRAM users, so that one
# user name always gets the same salt and probing does not reveal which exist
# (RFC 5802 section 9 leaves this to the server).
_UNKNOWN_USER_KEY: Final = secrets.token_bytes(32)


class _ScramServerState(enum.Enum):
    CLIENT_FIRST = enum.auto()
    CLIENT_FINAL = enum.auto()
    ACKNOWLEDGE = enum.auto()


class _ScramServer(ServerMechanism):
    _hash: ClassVar[str] = ""

    def __init__(
        self,
        lookup_scram: ScramLookup,
        *,
        authorize: AuthorizationChecker | None = None,
        nonce: NonceFactory = secrets.token_urlsafe,
    ) -> None:
        super().__init__()
        self._lookup_scram = lookup_scram
        self._authorize = authorize
        self._nonce = nonce
        self._state = _ScramServerState.CLIENT_FIRST
        self._credentials: ScramCredentials | None = None
        self._authcid = ""
        self._authzid: str | None = None
        self._gs2_header = b""
        self._client_first_bare = ""
        self._server_first = ""
        self._combined_nonce = ""

    def _start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Step.continue_with(b"")
        return self._step(initial_response)

    def _step(self, response: bytes) -> Step:
        if self._state is _ScramServerState.CLIENT_FIRST:
            return self._server_first_message(response)
        if self._state is _ScramServerState.CLIENT_FINAL:
            return self._server_final_message(response)
        if response:
            return _malformed(
                f"{self.name}: expected an empty response to the server signature",
                authcid=self._authcid,
            )
        return Step.succeed(self._authcid, self._authzid)

    def _server_first_message(self, message: bytes) -> Step:
        text = _utf8(message)
        header = None if text is None else _GS2_HEADER.match(text)
        if text is None or header is None:
            return _malformed(f"{self.name}: malformed GS2 header (RFC 5802 section 7)")
        if header["flag"].startswith("p"):
            return Step.fail("channel binding not supported")
        authzid = header["authzid"]
        if authzid is not None:
            authzid = _unescape_saslname(authzid)
            if authzid is None:
                return _malformed(f"{self.name}: malformed authzid")
        bare = text[header.end() :]
        if bare.startswith("m="):
            return Step.fail("mandatory extension not supported")
        fields = _CLIENT_FIRST_BARE.fullmatch(bare)
        if fields is None:
            return _malformed(f"{self.name}: malformed client-first-message")
        user = _unescape_saslname(fields["user"])
        authcid = None if user is None else _prepared(user)
        if not authcid:
            return _malformed(f"{self.name}: user name malformed or refused by SASLprep")
        credentials = self._lookup_scram(authcid)
        if credentials is not None and len(credentials.stored_key) != self._digest_size():
            raise SaslError(f"{self.name}: lookup_scram returned keys for another hash")
        server_nonce = self._nonce()
        if not _NONCE.fullmatch(server_nonce):
            raise SaslError(f"{self.name}: the nonce factory gave {server_nonce!r}")
        if credentials is None:
            salt = hmac.digest(_UNKNOWN_USER_KEY, authcid.encode(), "sha256")[:16]
            iterations = _MIN_SCRAM_ITERATIONS
        else:
            salt, iterations = credentials.salt, credentials.iterations
        self._credentials = credentials
        self._authcid = authcid
        self._authzid = authzid or None
        self._gs2_header = text[: header.end()].encode()
        self._client_first_bare = bare
        self._combined_nonce = fields["nonce"] + server_nonce
        self._server_first = f"r={self._combined_nonce},s={_b64encode(salt)},i={iterations}"
        self._state = _ScramServerState.CLIENT_FINAL
        return Step.continue_with(self._server_first.encode())

    def _server_final_message(self, message: bytes) -> Step:
        authcid = self._authcid
        text = _utf8(message)
        fields = None if text is None else _CLIENT_FINAL.fullmatch(text)
        if text is None or fields is None:
            return _malformed(f"{self.name}: malformed client-final-message", authcid=authcid)
        if _b64decode(fields["binding"]) != self._gs2_header:
            return _malformed(f"{self.name}: channel binding does not match", authcid=authcid)
        if fields["nonce"] != self._combined_nonce:
            return _malformed(f"{self.name}: nonce does not match", authcid=authcid)
        proof = _b64decode(fields["proof"])
        if proof is None or len(proof) != self._digest_size():
            return _malformed(f"{self.name}: malformed proof", authcid=authcid)
        credentials = self._credentials
        if credentials is None:
            return Step.fail("unknown user", authcid=authcid)
        without_proof = text[: fields.start("proof") - len(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_key = _xor(proof, hmac.digest(credentials.stored_key, auth_message, self._hash))
        stored_key = hashlib.new(self._hash, client_key).digest()
        if not hmac.compare_digest(stored_key, credentials.stored_key):
            return Step.fail("invalid proof", authcid=authcid)
        authzid = self._authzid
        if (
            authzid is not None
            and authzid != authcid
            and (self._authorize is None or not self._authorize(authcid, authzid))
        ):
            return Step.fail(f"{authcid!r} may not act as {authzid!r}", authcid=authcid)
        signature = hmac.digest(credentials.server_key, auth_message, self._hash)
        self._state = _ScramServerState.ACKNOWLEDGE
        return Step.continue_with(f"v={_b64encode(signature)}".encode())

    def _digest_size(self) -> int:
        return hashlib.new(self._hash).digest_size


class ScramSha1Server(_ScramServer):
    """SCRAM-SHA-1 (RFC 5802) server, without channel binding.

    ``lookup_scram`` gives the user's SHA-1 ScramCredentials (never a
    password). A client asking for channel binding ("p=") is refused; "y" (the
    client could bind but thinks the server cannot) is accepted, as this server
    advertises no -PLUS mechanism. After a valid proof the server signature
    goes out as a challenge ("v=..."), which RFC 4954 needs because SMTP has no
    success-with-data; the client's empty answer then gives success. An unknown
    user gets a stable fake salt and fails only at the proof, so probing does
    not reveal which users exist. ``authorize`` decides requests to act as
    another identity; without it they fail."""

    name = "SCRAM-SHA-1"
    _hash = "sha1"


class ScramSha256Server(_ScramServer):
    """SCRAM-SHA-256 (RFC 7677) server; see ``ScramSha1Server``.
    ``lookup_scram`` gives SHA-256 credentials."""

    name = "SCRAM-SHA-256"
    _hash = "sha256"


class _OAuthState(enum.Enum):
    MESSAGE = enum.auto()
    ERROR_SENT = enum.auto()


class _OAuthServer(ServerMechanism):
    """Shared flow of XOAUTH2 and OAUTHBEARER: one message; a refused token
    gets a JSON error challenge, whose answer ends in failure."""

    _error_answer: ClassVar[bytes] = b""

    def __init__(self, check_token: TokenChecker) -> None:
        super().__init__()
        self._check_token = check_token
        self._state = _OAuthState.MESSAGE
        self._user = ""

    def _start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Step.continue_with(b"")
        return self._step(initial_response)

    def _step(self, response: bytes) -> Step:
        if self._state is _OAuthState.ERROR_SENT:
            return Step.fail(
                "invalid token",
                authcid=self._user or None,
                is_malformed=response != self._error_answer,
            )
        parsed = self._parse(response)
        if isinstance(parsed, Step):
            return parsed
        user, token = parsed
        if self._check_token(user, token):
            return Step.succeed(user or None)
        self._user = user
        self._state = _OAuthState.ERROR_SENT
        return Step.continue_with(self._error())

    @abstractmethod
    def _parse(self, message: bytes) -> tuple[str, str] | Step: ...

    @abstractmethod
    def _error(self) -> bytes: ...


class XOAuth2Server(_OAuthServer):
    """XOAUTH2 server: parses ``user=USER ^A auth=Bearer TOKEN ^A ^A`` and asks
    ``check_token``. A refused token gets Google's JSON error as a challenge
    (status 401, and ``scope`` when given); the client's empty answer then
    gives the failure."""

    name = "XOAUTH2"
    _error_answer = b""

    def __init__(self, check_token: TokenChecker, *, scope: str | None = None) -> None:
        super().__init__(check_token)
        self._scope = scope

    def _parse(self, message: bytes) -> tuple[str, str] | Step:
        fields = message.split(b"\x01")
        if len(fields) != 4 or fields[2] or fields[3] or not fields[0].startswith(b"user="):
            return _malformed("XOAUTH2 message is not 'user=... ^A auth=Bearer ... ^A ^A'")
        user = _utf8(fields[0][len(b"user=") :])
        bearer = None
        if fields[1].startswith(b"auth="):
            bearer = _BEARER.fullmatch(fields[1], len(b"auth="))
        if not user or "\x00" in user or bearer is None:
            return _malformed("XOAUTH2 user or bearer token malformed")
        return user, bearer[1].decode("ascii")

    def _error(self) -> bytes:
        fields = [("status", "401"), ("schemes", "bearer")]
        if self._scope is not None:
            fields.append(("scope", self._scope))
        return _json_object(fields)


_OAUTH_KVPAIR = re.compile(rb"([A-Za-z]+)=([\x20-\x7e\t\r\n]*)")


class OAuthBearerServer(_OAuthServer):
    """OAUTHBEARER (RFC 7628) server: parses the GS2 header and key-value pairs
    and asks ``check_token`` with the header's user ("" when absent). A client
    asking for channel binding is refused. A refused token gets the JSON error
    of section 3.2.2 (status "invalid_token", with ``scope`` and
    ``openid_configuration`` when given); the client's ``^A`` answer then gives
    the failure."""

    name = "OAUTHBEARER"
    _error_answer = b"\x01"

    def __init__(
        self,
        check_token: TokenChecker,
        *,
        scope: str | None = None,
        openid_configuration: str | None = None,
    ) -> None:
        super().__init__(check_token)
        self._scope = scope
        self._openid_configuration = openid_configuration

    def _parse(self, message: bytes) -> tuple[str, str] | Step:
        head, separator, rest = message.partition(b"\x01")
        header_text = _utf8(head)
        header = None if header_text is None else _GS2_HEADER.fullmatch(header_text)
        if not separator or header is None:
            return _malformed("OAUTHBEARER: malformed GS2 header (RFC 7628 section 3.1)")
        if header["flag"].startswith("p"):
            return Step.fail("channel binding not supported")
        user = ""
        if header["authzid"] is not None:
            unescaped = _unescape_saslname(header["authzid"])
            if unescaped is None:
                return _malformed("OAUTHBEARER: malformed authzid")
            user = unescaped
        # rest is *(key "=" value ^A) ^A
        if not rest.endswith(b"\x01"):
            return _malformed("OAUTHBEARER: message does not end with ^A")
        pairs: dict[bytes, bytes] = {}
        body = rest[:-1]
        if body:
            if not body.endswith(b"\x01"):
                return _malformed("OAUTHBEARER: key-value pair not ended by ^A")
            for item in body[:-1].split(b"\x01"):
                pair = _OAUTH_KVPAIR.fullmatch(item)
                if pair is None or pair[1] in pairs:
                    return _malformed("OAUTHBEARER: malformed or repeated key-value pair")
                pairs[pair[1]] = pair[2]
        bearer = _BEARER.fullmatch(pairs.get(b"auth", b""))
        if bearer is None:
            return _malformed("OAUTHBEARER: no 'auth=Bearer <token>' pair")
        return user, bearer[1].decode("ascii")

    def _error(self) -> bytes:
        fields = [("status", "invalid_token")]
        if self._scope is not None:
            fields.append(("scope", self._scope))
        if self._openid_configuration is not None:
            fields.append(("openid-configuration", self._openid_configuration))
        return _json_object(fields)


class ExternalServer(ServerMechanism):
    """EXTERNAL (RFC 4422 appendix A) server: the message is the requested
    authorization identity (maybe empty); ``check_external`` decides from the
    credentials established outside SASL. On success ``authcid`` is None (the
    application knows who the external credentials name)."""

    name = "EXTERNAL"

    def __init__(self, check_external: ExternalChecker) -> None:
        super().__init__()
        self._check_external = check_external

    def _start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Step.continue_with(b"")
        return self._step(initial_response)

    def _step(self, response: bytes) -> Step:
        authzid = _utf8(response)
        if authzid is None or "\x00" in authzid:
            return _malformed("EXTERNAL authorization identity is not UTF-8 or holds NUL")
        if not self._check_external(authzid):
            return Step.fail("external credentials refused")
        return Step.succeed(None, authzid or None)


# --- factories ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verifiers:
    """The application's verifiers, for ``server_mechanism``: each mechanism
    needs one of them, and ``mechanisms`` lists those that can be served."""

    check_password: PasswordChecker | None = None
    """For PLAIN and LOGIN."""
    lookup_password: PasswordLookup | None = None
    """For CRAM-MD5: the plaintext password."""
    lookup_scram_sha1: ScramLookup | None = None
    """For SCRAM-SHA-1: SHA-1 ScramCredentials."""
    lookup_scram_sha256: ScramLookup | None = None
    """For SCRAM-SHA-256: SHA-256 ScramCredentials."""
    check_token: TokenChecker | None = None
    """For XOAUTH2 and OAUTHBEARER."""
    check_external: ExternalChecker | None = None
    """For EXTERNAL."""
    authorize: AuthorizationChecker | None = None
    """For SCRAM clients asking to act as someone else."""

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The mechanisms these verifiers can serve, strongest first (what to
        advertise in the EHLO AUTH line)."""
        available = {
            "SCRAM-SHA-256": self.lookup_scram_sha256,
            "SCRAM-SHA-1": self.lookup_scram_sha1,
            "CRAM-MD5": self.lookup_password,
            "PLAIN": self.check_password,
            "LOGIN": self.check_password,
            "OAUTHBEARER": self.check_token,
            "XOAUTH2": self.check_token,
            "EXTERNAL": self.check_external,
        }
        return tuple(name for name in MECHANISMS if available[name] is not None)


def server_mechanism(
    name: str,
    verifiers: Verifiers,
    *,
    nonce: NonceFactory = secrets.token_urlsafe,
    hostname: str = "localhost",
) -> ServerMechanism:
    """A fresh server mechanism for ``name`` (case-insensitive), as a client's
    AUTH command asks. Raises SaslError for an unknown name or one whose
    verifier is missing (the SMTP layer answers 504). ``nonce`` feeds SCRAM and
    CRAM-MD5; ``hostname`` goes into the CRAM-MD5 challenge."""
    mechanism = name.upper()
    if mechanism not in verifiers.mechanisms:
        raise SaslError(f"mechanism {name!r} is not available with these verifiers")
    if mechanism == "SCRAM-SHA-256" and verifiers.lookup_scram_sha256 is not None:
        return ScramSha256Server(
            verifiers.lookup_scram_sha256, authorize=verifiers.authorize, nonce=nonce
        )
    if mechanism == "SCRAM-SHA-1" and verifiers.lookup_scram_sha1 is not None:
        return ScramSha1Server(
            verifiers.lookup_scram_sha1, authorize=verifiers.authorize, nonce=nonce
        )
    if mechanism == "CRAM-MD5" and verifiers.lookup_password is not None:
        return CramMd5Server(verifiers.lookup_password, hostname=hostname, nonce=nonce)
    if mechanism == "PLAIN" and verifiers.check_password is not None:
        return PlainServer(verifiers.check_password)
    if mechanism == "LOGIN" and verifiers.check_password is not None:
        return LoginServer(verifiers.check_password)
    if mechanism == "OAUTHBEARER" and verifiers.check_token is not None:
        return OAuthBearerServer(verifiers.check_token)
    if mechanism == "XOAUTH2" and verifiers.check_token is not None:
        return XOAuth2Server(verifiers.check_token)
    if mechanism == "EXTERNAL" and verifiers.check_external is not None:
        return ExternalServer(verifiers.check_external)
    raise SaslError(f"mechanism {name!r} is not available with these verifiers")


def client_mechanism(
    name: str,
    *,
    username: str = "",
    password: str | None = None,
    authzid: str = "",
    token: str | None = None,
    nonce: str | None = None,
) -> ClientMechanism:
    """A fresh client mechanism for ``name`` (case-insensitive).

    Password mechanisms need ``password``, XOAUTH2 and OAUTHBEARER ``token``;
    ``authzid`` is used by PLAIN, SCRAM and EXTERNAL; ``nonce`` by SCRAM (for
    tests). Raises SaslError for an unknown name or missing credentials.
    """
    mechanism = name.upper()
    if mechanism == "EXTERNAL":
        return External(authzid)
    if mechanism in _TOKEN_MECHANISMS:
        if token is None:
            raise SaslError(f"{mechanism} needs a token")
        if mechanism == "XOAUTH2":
            return XOAuth2(username, token)
        return OAuthBearer(username, token)
    if mechanism not in _PASSWORD_MECHANISMS:
        raise SaslError(f"unknown SASL mechanism {name!r}")
    if password is None:
        raise SaslError(f"{mechanism} needs a password")
    if mechanism == "SCRAM-SHA-256":
        return ScramSha256(username, password, authzid=authzid, nonce=nonce)
    if mechanism == "SCRAM-SHA-1":
        return ScramSha1(username, password, authzid=authzid, nonce=nonce)
    if mechanism == "CRAM-MD5":
        return CramMd5(username, password)
    if mechanism == "PLAIN":
        return Plain(username, password, authzid=authzid)
    return Login(username, password)


def strongest(
    offered: Iterable[str],
    available: Iterable[str] | None = None,
    *,
    has_password: bool = True,
    has_token: bool = False,
    use_external: bool = False,
) -> str | None:
    """The mechanism to use among those the server ``offered`` (EHLO AUTH
    line, any case), or None when there is none.

    The preference is fixed: EXTERNAL when ``use_external``, then OAUTHBEARER
    and XOAUTH2 when ``has_token``, then, when ``has_password``, SCRAM-SHA-256,
    SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN. ``available`` narrows the choice
    further (say, no PLAIN or LOGIN before TLS); None means every mechanism.
    """
    offered_names = {name.upper() for name in offered}
    allowed = set(MECHANISMS) if available is None else {name.upper() for name in available}
    candidates: list[str] = []
    if use_external:
        candidates.append("EXTERNAL")
    if has_token:
        candidates += _TOKEN_MECHANISMS
    if has_password:
        candidates += _PASSWORD_MECHANISMS
    for name in candidates:
        if name in offered_names and name in allowed:
            return name
    return None

"""smtp_core.sasl: SASL mechanisms for both roles, checked against the RFC
examples, by client/server round trips, and with arbitrary bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import stringprep

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_core import ProtocolError
from smtp_core.sasl import (
    MAX_SCRAM_ITERATIONS,
    MECHANISMS,
    ClientMechanism,
    CramMd5,
    CramMd5Server,
    External,
    ExternalServer,
    Login,
    LoginServer,
    OAuthBearer,
    OAuthBearerServer,
    Plain,
    PlainServer,
    SaslError,
    ScramCredentials,
    ScramSha1,
    ScramSha1Server,
    ScramSha256,
    ScramSha256Server,
    ServerMechanism,
    Step,
    Verifiers,
    XOAuth2,
    XOAuth2Server,
    client_mechanism,
    saslprep,
    scram_credentials,
    server_mechanism,
    strongest,
)

# --- helpers ----------------------------------------------------------------------


def run_exchange(
    client: ClientMechanism, server: ServerMechanism, *, send_initial: bool = True
) -> Step:
    """Wire a client mechanism to a server mechanism until the server decides.

    With ``send_initial`` false the client holds its initial response back and
    gives it in answer to the server's empty challenge (RFC 4954 section 4)."""
    step = server.start(client.initial_response() if send_initial else None)
    rounds = 0
    while step.challenge is not None:
        rounds += 1
        assert rounds < 10, "exchange does not end"
        step = server.step(client.respond(step.challenge))
    return step


def fixed_nonce(value: str):
    return lambda: value


def refuse_all(*_: object) -> bool:
    return False


def _preparable_char(char: str) -> bool:
    # Leave out what SASLprep refuses outright (unassigned in Unicode 3.2,
    # prohibited) and right-to-left letters, whose bidi rules random strings
    # would mostly break.
    return not (
        stringprep.in_table_a1(char)
        or stringprep.in_table_d1(char)
        or stringprep.in_table_c21_c22(char)
        or stringprep.in_table_c3(char)
        or stringprep.in_table_c4(char)
        or stringprep.in_table_c5(char)
        or stringprep.in_table_c6(char)
        or stringprep.in_table_c7(char)
        or stringprep.in_table_c8(char)
        or stringprep.in_table_c9(char)
    )


def _survives_saslprep(text: str) -> bool:
    try:
        return saslprep(text) != ""
    except SaslError:
        return False


# UTF-8 text without control characters, that SASLprep accepts.
credentials_text = st.text(
    alphabet=st.characters(categories=("L", "M", "N", "P", "S", "Zs")).filter(_preparable_char),
    min_size=1,
    max_size=16,
).filter(_survives_saslprep)
tokens = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,40}={0,2}", fullmatch=True)


# --- SCRAM: RFC 5802 section 5 and RFC 7677 section 3 ------------------------------------

SCRAM_EXAMPLES = [
    pytest.param(
        ScramSha1,
        ScramSha1Server,
        "sha1",
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "QSXCR+Q6sek8bf92",
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        id="RFC5802-SCRAM-SHA-1",
    ),
    pytest.param(
        ScramSha256,
        ScramSha256Server,
        "sha256",
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        id="RFC7677-SCRAM-SHA-256",
    ),
]
SCRAM_FIELDS = (
    "client_class, server_class, hash_name, client_nonce, server_nonce, salt, client_final,"
    " server_final"
)


@pytest.mark.parametrize(SCRAM_FIELDS, SCRAM_EXAMPLES)
def test_scram_client_reproduces_the_rfc_example(
    client_class,
    server_class,
    hash_name,
    client_nonce,
    server_nonce,
    salt,
    client_final,
    server_final,
):
    """RFC 5802 section 5 (SCRAM-SHA-1) and RFC 7677 section 3 (SCRAM-SHA-256):
    user "user", password "pencil", the RFC's nonces; every client message
    byte for byte, and the server signature accepted."""
    client = client_class("user", "pencil", nonce=client_nonce)
    assert client.initial_response() == f"n,,n=user,r={client_nonce}".encode()
    server_first = f"r={client_nonce}{server_nonce},s={salt},i=4096".encode()
    assert client.respond(server_first) == client_final
    assert not client.is_complete
    assert client.respond(server_final) == b""
    assert client.is_complete


@pytest.mark.parametrize(SCRAM_FIELDS, SCRAM_EXAMPLES)
def test_scram_server_reproduces_the_rfc_example(
    client_class,
    server_class,
    hash_name,
    client_nonce,
    server_nonce,
    salt,
    client_final,
    server_final,
):
    """RFC 5802 section 5 and RFC 7677 section 3, server side: from credentials
    derived from "pencil" (never the password itself), the server-first and
    server-final messages byte for byte, then success."""
    credentials = scram_credentials("pencil", base64.b64decode(salt), 4096, hash_name)
    lookups: list[str] = []

    def lookup(authcid: str) -> ScramCredentials | None:
        lookups.append(authcid)
        return credentials

    server = server_class(lookup, nonce=fixed_nonce(server_nonce))
    step = server.start(f"n,,n=user,r={client_nonce}".encode())
    assert step.challenge == f"r={client_nonce}{server_nonce},s={salt},i=4096".encode()
    step = server.step(client_final)
    assert step.challenge == server_final
    assert not server.is_complete
    step = server.step(b"")
    assert step == Step(success=True, authcid="user")
    assert lookups == ["user"]
    assert server.is_complete and server.outcome == step


@pytest.mark.parametrize(SCRAM_FIELDS, SCRAM_EXAMPLES)
def test_scram_client_refuses_a_tampered_server_signature(
    client_class,
    server_class,
    hash_name,
    client_nonce,
    server_nonce,
    salt,
    client_final,
    server_final,
):
    """RFC 5802 section 9 (mutual authentication): a server-final whose
    signature is off by one bit raises SaslError, and the client never counts
    the exchange as complete."""
    client = client_class("user", "pencil", nonce=client_nonce)
    client.initial_response()
    client.respond(f"r={client_nonce}{server_nonce},s={salt},i=4096".encode())
    signature = bytearray(base64.b64decode(server_final[2:]))
    signature[0] ^= 1
    with pytest.raises(SaslError, match="signature"):
        client.respond(b"v=" + base64.b64encode(bytes(signature)))
    assert not client.is_complete
    with pytest.raises(SaslError):
        client.respond(server_final)


def test_scram_client_reports_a_server_error():
    """RFC 5802 section 7: server-final "e=" values raise SaslError and are kept
    in ``error``."""
    client = ScramSha256("user", "pencil", nonce="abc")
    client.initial_response()
    client.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")
    with pytest.raises(SaslError, match="invalid-proof"):
        client.respond(b"e=invalid-proof")
    assert client.error == "invalid-proof"
    assert not client.is_complete


@pytest.mark.parametrize(
    "server_first, message",
    [
        (b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1", "iteration count 1"),
        (b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4095", "iteration count 4095"),
        (b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1000001", "iteration count 1000001"),
        (b"r=abcdef,s=QSXCR+Q6sek8bf92,i=0", "malformed"),
        (b"r=xyzdef,s=QSXCR+Q6sek8bf92,i=4096", "nonce"),
        (b"r=abc,s=QSXCR+Q6sek8bf92,i=4096", "nonce"),
        (b"r=abcdef,s=not*base64,i=4096", "salt"),
        (b"m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096", "extension"),
        (b"\xff\xfe", "UTF-8"),
        (b"", "malformed"),
    ],
)
def test_scram_client_refuses_bad_server_first_messages(server_first, message):
    """RFC 5802 sections 5.1 and 7, RFC 7677 section 4: the nonce must extend
    the client's, the salt is base64, mandatory extensions are refused, and the
    iteration count must be at least 4096 and at most MAX_SCRAM_ITERATIONS (a
    server must not make the client spin)."""
    assert MAX_SCRAM_ITERATIONS == 1_000_000
    client = ScramSha256("user", "pencil", nonce="abc")
    client.initial_response()
    with pytest.raises(SaslError, match=message):
        client.respond(server_first)


def test_scram_client_min_iterations_can_be_lowered():
    """RFC 5802 section 5.1: the 4096 floor is a SHOULD; a client may accept
    less from a legacy server when told to."""
    client = ScramSha1("user", "pencil", nonce="abc", min_iterations=1)
    client.initial_response()
    assert client.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1").startswith(b"c=biws,r=abcdef,p=")


def test_scram_escapes_user_names_and_the_server_unescapes_them():
    """RFC 5802 section 5.1: "=" and "," in a user name travel as "=3D" and
    "=2C"; the server hands the verifier the original name."""
    password = "secret"
    credentials = scram_credentials(password, b"salt" * 4, 4096, "sha256")
    seen: list[str] = []

    def lookup(authcid: str) -> ScramCredentials | None:
        seen.append(authcid)
        return credentials

    assert ScramSha256("a=b,c", password, nonce="n1").initial_response() == b"n,,n=a=3Db=2Cc,r=n1"
    step = run_exchange(ScramSha256("a=b,c", password), ScramSha256Server(lookup))
    assert step == Step(success=True, authcid="a=b,c")
    assert seen == ["a=b,c"]


def test_scram_server_refuses_channel_binding_requests():
    """RFC 5802 section 6: a client asking for channel binding ("p=") is
    refused, since this server offers no -PLUS mechanism."""
    server = ScramSha256Server(lambda authcid: None)
    step = server.start(b"p=tls-unique,,n=user,r=abc")
    assert step == Step.fail("channel binding not supported")
    assert step.is_final and not step.success


def test_scram_server_accepts_y_flag_and_checks_the_binding_echo():
    """RFC 5802 section 6: "y" (client supports channel binding, believes the
    server does not) is accepted, and the client-final "c=" must echo that
    header ("eSws" is base64 of "y,,")."""
    salt = b"0123456789abcdef"
    credentials = scram_credentials("pencil", salt, 4096, "sha256")
    server = ScramSha256Server(lambda authcid: credentials, nonce=fixed_nonce("SERVER"))
    step = server.start(b"y,,n=user,r=CLIENT")
    server_first = f"r=CLIENTSERVER,s={base64.b64encode(salt).decode()},i=4096"
    assert step.challenge == server_first.encode()
    # An independent computation of the client proof (RFC 5802 section 3).
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = "c=eSws,r=CLIENTSERVER"
    auth_message = f"n=user,r=CLIENT,{server_first},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
    step = server.step(final)
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = hmac.digest(server_key, auth_message, "sha256")
    assert step.challenge == b"v=" + base64.b64encode(expected)
    assert server.step(b"") == Step(success=True, authcid="user")

    mismatched = ScramSha256Server(lambda authcid: credentials, nonce=fixed_nonce("SERVER"))
    mismatched.start(b"y,,n=user,r=CLIENT")
    step = mismatched.step(final.replace(b"c=eSws", b"c=biws"))
    assert step.is_malformed and "channel binding" in (step.reason or "")


def test_scram_server_fails_unknown_users_only_at_the_proof():
    """RFC 5802 section 9: an unknown user gets a salt like any other, the same
    one each time, and fails at the proof, so probing reveals nothing."""

    def first_challenge() -> bytes:
        server = ScramSha1Server(lambda authcid: None, nonce=fixed_nonce("S"))
        challenge = server.start(b"n,,n=ghost,r=C").challenge
        assert challenge is not None
        return challenge

    assert first_challenge() == first_challenge()
    assert first_challenge().startswith(b"r=CS,s=") and first_challenge().endswith(b",i=4096")
    client = ScramSha1("ghost", "whatever", nonce="C")
    step = run_exchange(client, ScramSha1Server(lambda authcid: None, nonce=fixed_nonce("S")))
    assert step == Step.fail("unknown user", authcid="ghost")


def test_scram_authzid_needs_authorization():
    """RFC 5802 section 5.1 ("a="): acting as another identity fails unless
    ``authorize`` allows it."""
    credentials = scram_credentials("pw", b"saltsaltsaltsalt", 4096, "sha256")
    refused = run_exchange(
        ScramSha256("alice", "pw", authzid="bob"), ScramSha256Server(lambda authcid: credentials)
    )
    assert not refused.success and refused.authcid == "alice"
    asked: list[tuple[str, str]] = []

    def authorize(authcid: str, authzid: str) -> bool:
        asked.append((authcid, authzid))
        return True

    client = ScramSha256("alice", "pw", authzid="bob")
    allowed = run_exchange(
        client, ScramSha256Server(lambda authcid: credentials, authorize=authorize)
    )
    assert allowed == Step(success=True, authcid="alice", authzid="bob")
    assert asked == [("alice", "bob")]


def test_scram_server_refuses_keys_of_the_wrong_hash():
    """RFC 5802 section 3: keys are hash-specific; SHA-1 keys handed to a
    SCRAM-SHA-256 server are the application's mistake, a SaslError."""
    credentials = scram_credentials("pw", b"saltsaltsaltsalt", 4096, "sha1")
    server = ScramSha256Server(lambda authcid: credentials)
    with pytest.raises(SaslError, match="another hash"):
        server.start(b"n,,n=user,r=abc")


# --- PLAIN: RFC 4616 ------------------------------------------------------------------


def test_plain_rfc4616_examples_client():
    """RFC 4616 section 4: "<NUL>tim<NUL>tanstaaftanstaaf", and Kurt asking to
    act as Ursel: "Ursel<NUL>Kurt<NUL>xipj3plmq"."""
    assert Plain("tim", "tanstaaftanstaaf").initial_response() == b"\x00tim\x00tanstaaftanstaaf"
    kurt = Plain("Kurt", "xipj3plmq", authzid="Ursel")
    assert kurt.initial_response() == b"Ursel\x00Kurt\x00xipj3plmq"
    assert kurt.is_complete


def test_plain_rfc4616_examples_server():
    """RFC 4616 section 4: tim is authenticated; Kurt's request to act as
    Ursel reaches the verifier, which refuses it."""
    calls: list[tuple[str, str, str]] = []

    def check_password(authcid: str, password: str, authzid: str) -> bool:
        calls.append((authcid, password, authzid))
        return password == {"tim": "tanstaaftanstaaf"}.get(authcid) and authzid in ("", authcid)

    step = PlainServer(check_password).start(b"\x00tim\x00tanstaaftanstaaf")
    assert step == Step(success=True, authcid="tim")
    step = PlainServer(check_password).start(b"Ursel\x00Kurt\x00xipj3plmq")
    assert step == Step.fail("invalid credentials", authcid="Kurt")
    assert calls == [("tim", "tanstaaftanstaaf", ""), ("Kurt", "xipj3plmq", "Ursel")]


def test_plain_without_initial_response_gets_an_empty_challenge():
    """RFC 4422 section 5 and RFC 4954 section 4: with no initial response
    the server sends an empty challenge and the client answers with its
    message."""
    server = PlainServer(lambda authcid, password, authzid: password == "pw")
    client = Plain("u", "pw")
    step = server.start(None)
    assert step == Step.continue_with(b"")
    assert client.respond(step.challenge or b"") == b"\x00u\x00pw"
    assert server.step(b"\x00u\x00pw") == Step(success=True, authcid="u")


def test_plain_client_refuses_nul_inside_fields():
    """RFC 4616 section 2: NUL separates the fields and cannot appear in one."""
    for username, password, authzid in [
        ("a\x00b", "pw", ""),
        ("a", "p\x00w", ""),
        ("a", "pw", "\x00"),
    ]:
        with pytest.raises(SaslError, match="NUL"):
            Plain(username, password, authzid=authzid)
    with pytest.raises(SaslError):
        Plain("", "pw")


def test_plain_server_prepares_with_saslprep():
    """RFC 4616 section 2 recommends SASLprep before comparing: a soft hyphen
    vanishes and a Roman numeral nine becomes "IX" (RFC 4013 section 3)."""
    seen: list[tuple[str, str]] = []

    def check_password(authcid: str, password: str, authzid: str) -> bool:
        seen.append((authcid, password))
        return True

    PlainServer(check_password).start("\x00I\u00adX\x00\u2168".encode())
    PlainServer(check_password, prepare=False).start("\x00I\u00adX\x00\u2168".encode())
    assert seen == [("IX", "IX"), ("I\u00adX", "\u2168")]


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"tim",
        b"\x00tim",
        b"a\x00b\x00c\x00d",
        b"\x00\x00pw",
        b"\x00tim\x00",
        b"\x00\xff\x00pw",
    ],
)
def test_plain_server_fails_malformed_messages(message):
    """RFC 4616 section 2: exactly three fields, authcid and passwd non-empty,
    UTF-8; anything else is a failed Step marked malformed, not an exception."""
    step = PlainServer(lambda *args: True).start(message)
    assert step.is_final and not step.success and step.is_malformed


# --- LOGIN ------------------------------------------------------------------------------


def test_login_answers_any_two_challenges_in_order():
    """draft-murchison-sasl-login section 2: the user name, then the password;
    the challenge wording is not checked."""
    client = Login("tim", "tanstaaftanstaaf")
    assert client.initial_response() is None
    assert client.respond(b"VXNlcm5hbWU6 whatever") == b"tim"
    assert not client.is_complete
    assert client.respond(b"") == b"tanstaaftanstaaf"
    assert client.is_complete
    with pytest.raises(SaslError):
        client.respond(b"Password:")


def test_login_server_prompts_and_takes_an_initial_user_name():
    """draft-murchison-sasl-login section 2: "Username:" and "Password:"
    prompts; clients that send the user name with AUTH skip the first."""
    server = LoginServer(lambda authcid, password, authzid: (authcid, password) == ("tim", "pw"))
    assert server.start(None) == Step.continue_with(b"Username:")
    assert server.step(b"tim") == Step.continue_with(b"Password:")
    assert server.step(b"pw") == Step(success=True, authcid="tim")
    server = LoginServer(lambda authcid, password, authzid: False)
    assert server.start(b"tim") == Step.continue_with(b"Password:")
    assert server.step(b"pw") == Step.fail("invalid credentials", authcid="tim")


# --- CRAM-MD5: RFC 2195 ------------------------------------------------------------------

RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC2195_RESPONSE = b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_rfc2195_example_client():
    """RFC 2195 section 2: user tim, secret tanstaaftanstaaf, the challenge
    <1896.697170952@postoffice.reston.mci.net>."""
    client = CramMd5("tim", "tanstaaftanstaaf")
    assert client.initial_response() is None
    assert client.respond(RFC2195_CHALLENGE) == RFC2195_RESPONSE
    assert client.is_complete


def test_cram_md5_rfc2195_example_server():
    """RFC 2195 section 2, server side: the same challenge from a fixed nonce
    and hostname, and the RFC's answer accepted; a wrong digest refused."""
    server = CramMd5Server(
        {"tim": "tanstaaftanstaaf"}.get,
        hostname="postoffice.reston.mci.net",
        nonce=fixed_nonce("1896.697170952"),
    )
    assert server.start(None) == Step.continue_with(RFC2195_CHALLENGE)
    assert server.step(RFC2195_RESPONSE) == Step(success=True, authcid="tim")
    server = CramMd5Server({"tim": "other"}.get, nonce=fixed_nonce("1896.697170952"))
    server.start(None)
    assert server.step(RFC2195_RESPONSE) == Step.fail("invalid credentials", authcid="tim")


@pytest.mark.parametrize("challenge", [b"", b"no brackets", b"<>", b"<a b@c>", b"\xff"])
def test_cram_md5_client_refuses_malformed_challenges(challenge):
    """RFC 2195 section 2: the challenge is a msg-id in angle brackets."""
    with pytest.raises(SaslError, match="msg-id"):
        CramMd5("tim", "pw").respond(challenge)


def test_cram_md5_server_refuses_initial_response_and_unknown_users():
    """RFC 2195 section 2 / RFC 4954 section 4: CRAM-MD5 has no initial
    response; an unknown user fails like a wrong password."""
    step = CramMd5Server(lambda authcid: None).start(b"tim")
    assert step.is_malformed and not step.success
    server = CramMd5Server(lambda authcid: None)
    challenge = server.start(None).challenge
    assert challenge is not None
    assert server.step(CramMd5("nobody", "pw").respond(challenge)) == Step.fail(
        "unknown user", authcid="nobody"
    )


# --- XOAUTH2 and OAUTHBEARER (RFC 7628) -------------------------------------------------------


def test_xoauth2_message_matches_google_format():
    """Google's XOAUTH2 description: "user=" user ^A "auth=Bearer " token ^A ^A."""
    client = XOAuth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg")
    assert client.initial_response() == (
        b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg"
        b"\x01\x01"
    )


def test_xoauth2_failure_flow():
    """Google's XOAUTH2 description: a refused token gets a JSON error as a
    challenge; the client answers empty; the server then fails."""
    calls: list[tuple[str, str]] = []

    def check_token(authcid: str, token: str) -> bool:
        calls.append((authcid, token))
        return False

    server = XOAuth2Server(check_token, scope="https://mail.google.com/")
    client = XOAuth2("someuser@example.com", "expired")
    step = server.start(client.initial_response())
    assert step.challenge == (
        b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    )
    assert client.respond(step.challenge) == b""
    assert client.error == '{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    assert server.step(b"") == Step.fail("invalid token", authcid="someuser@example.com")
    assert calls == [("someuser@example.com", "expired")]
    with pytest.raises(SaslError):
        client.respond(b"{}")

    server = XOAuth2Server(check_token)
    server.start(XOAuth2("u", "t").initial_response())
    assert server.step(b"not empty").is_malformed


def test_oauthbearer_message_matches_rfc7628_example():
    """RFC 7628 section 4.1: GS2 header with the user, host, port and bearer
    token, each pair ended by ^A, and a final ^A."""
    client = OAuthBearer(
        "user@example.com",
        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        host="server.example.com",
        port=143,
    )
    message = client.initial_response()
    assert message == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    seen: list[tuple[str, str]] = []

    def check_token(authcid: str, token: str) -> bool:
        seen.append((authcid, token))
        return True

    assert OAuthBearerServer(check_token).start(message) == Step(
        success=True, authcid="user@example.com"
    )
    assert seen == [("user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==")]


def test_oauthbearer_failure_flow():
    """RFC 7628 sections 3.2.2 and 4.3: a refused token gets the JSON error
    challenge; the client answers with a single ^A; the server then fails."""
    server = OAuthBearerServer(
        refuse_all,
        scope="example_scope",
        openid_configuration="https://example.com/.well-known/openid-configuration",
    )
    client = OAuthBearer("user@example.com", "token")
    step = server.start(client.initial_response())
    error = (
        b'{"status":"invalid_token","scope":"example_scope",'
        b'"openid-configuration":"https://example.com/.well-known/openid-configuration"}'
    )
    assert step.challenge == error
    assert client.respond(error) == b"\x01"
    assert client.error == error.decode()
    assert server.step(b"\x01") == Step.fail("invalid token", authcid="user@example.com")


def test_oauthbearer_refuses_channel_binding_and_malformed_messages():
    """RFC 7628 section 3.1: no channel binding ("p=") is defined; the message
    is gs2-header ^A *(key=value ^A) ^A with an auth pair."""
    server = OAuthBearerServer(lambda authcid, token: True)
    assert server.start(b"p=tls-unique,,\x01auth=Bearer x\x01\x01") == Step.fail(
        "channel binding not supported"
    )
    for message in [
        b"n,,\x01auth=Bearer x\x01",  # no final ^A
        b"n,,\x01host=h\x01\x01",  # no auth
        b"n,,\x01auth=Bearer x\x01auth=Bearer y\x01\x01",  # repeated key
        b"n,,auth=Bearer x\x01\x01",  # no GS2 header
        b"n,a=a,b,\x01auth=Bearer x\x01\x01",  # unescaped ","
    ]:
        step = OAuthBearerServer(lambda authcid, token: True).start(message)
        assert step.is_malformed and not step.success, message
    step = OAuthBearerServer(lambda authcid, token: True).start(b"n,,\x01auth=Bearer x\x01\x01")
    assert step == Step(success=True)


# --- EXTERNAL: RFC 4422 appendix A ---------------------------------------------------------------


def test_external_sends_the_authzid_or_nothing():
    """RFC 4422 appendix A.1: the message is the authorization identity, or
    empty to act as the identity the external credentials carry."""
    assert External().initial_response() == b""
    assert External("fred@example.com").initial_response() == b"fred@example.com"
    seen: list[str] = []

    def check_external(authzid: str) -> bool:
        seen.append(authzid)
        return authzid in ("", "fred@example.com")

    assert ExternalServer(check_external).start(b"") == Step(success=True)
    assert ExternalServer(check_external).start(b"fred@example.com") == Step(
        success=True, authzid="fred@example.com"
    )
    assert ExternalServer(check_external).start(b"root") == Step.fail(
        "external credentials refused"
    )
    assert seen == ["", "fred@example.com", "root"]


# --- SASLprep: RFC 4013 section 3 -------------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ("I\u00adX", "IX"),  # soft hyphen mapped to nothing
        ("user", "user"),  # no transformation
        ("USER", "USER"),  # case preserved
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # NFKC, matches the first
    ],
)
def test_saslprep_rfc4013_examples(given, expected):
    """RFC 4013 section 3, examples 1 to 5."""
    assert saslprep(given) == expected


@pytest.mark.parametrize(
    "given, message",
    [
        ("\u0007", "prohibited"),  # example 6
        ("\u0627\u0031", "bidi"),  # example 7
    ],
)
def test_saslprep_rfc4013_error_examples(given, message):
    """RFC 4013 section 3, examples 6 (prohibited character) and 7
    (bidirectional check)."""
    with pytest.raises(SaslError, match=message):
        saslprep(given)


def test_saslprep_maps_spaces_and_handles_unassigned_code_points():
    """RFC 4013 sections 2.1 and 2.5: non-ASCII spaces become U+0020; code
    points unassigned in Unicode 3.2 pass only in queries."""
    assert saslprep("a\u00a0b\u3000c") == "a b c"
    assert saslprep("\u0627\u0628") == "\u0627\u0628"  # all right-to-left is fine
    emoji = "\U0001f600"  # unassigned in Unicode 3.2
    assert saslprep(emoji, allow_unassigned=True) == emoji
    with pytest.raises(SaslError, match="unassigned"):
        saslprep(emoji)


def test_utf8_credentials_work_for_every_password_mechanism():
    """RFC 4616 section 2, RFC 5802 section 5.1 (UTF-8 with SASLprep): a
    non-ASCII user name and password authenticate."""
    username, password = "J\u00fcrgen", "p\u00e4ssw\u00f6rd \u2603"
    for name, step in _password_exchanges(username, password, password).items():
        assert step == Step(success=True, authcid=username), name


# --- round trips and wrong passwords -----------------------------------------------------------


def _password_exchanges(username: str, password: str, stored: str) -> dict[str, Step]:
    """One exchange per password mechanism: the client knows ``password``, the
    server's records were made from ``stored``."""
    prepared = saslprep(stored)

    def check_password(authcid: str, given: str, authzid: str) -> bool:
        return authcid == saslprep(username) and given == prepared and authzid == ""

    def lookup_password(authcid: str) -> str | None:
        return stored if authcid == saslprep(username) else None

    sha1 = scram_credentials(stored, b"pepper-and-salt!", 4096, "sha1")
    sha256 = scram_credentials(stored, b"pepper-and-salt!", 4096, "sha256")
    return {
        "PLAIN": run_exchange(Plain(username, password), PlainServer(check_password)),
        "LOGIN": run_exchange(Login(username, password), LoginServer(check_password)),
        "CRAM-MD5": run_exchange(CramMd5(username, password), CramMd5Server(lookup_password)),
        "SCRAM-SHA-1": run_exchange(
            ScramSha1(username, password), ScramSha1Server(lambda authcid: sha1)
        ),
        "SCRAM-SHA-256": run_exchange(
            ScramSha256(username, password), ScramSha256Server(lambda authcid: sha256)
        ),
    }


@settings(max_examples=40, deadline=None)
@given(username=credentials_text, password=credentials_text)
def test_password_mechanisms_round_trip(username, password):
    """RFC 4616, RFC 2195, RFC 5802, RFC 7677: every password mechanism
    authenticates any UTF-8 user name and password SASLprep accepts, and the
    server reports the prepared user name."""
    for name, step in _password_exchanges(username, password, password).items():
        assert step == Step(success=True, authcid=saslprep(username)), name


@settings(max_examples=20, deadline=None)
@given(username=credentials_text, password=credentials_text, other=credentials_text)
def test_wrong_password_fails_for_every_password_mechanism(username, password, other):
    """RFC 4616 section 2, RFC 2195 section 2, RFC 5802 section 5: a password
    other than the stored one is refused, and the exchange still ends cleanly."""
    if saslprep(password) == saslprep(other):
        other = other + "x"
    for name, step in _password_exchanges(username, other, password).items():
        assert step.is_final and not step.success and not step.is_malformed, name
        assert step.authcid == saslprep(username), name


@given(
    username=credentials_text,
    token=tokens,
    send_initial=st.booleans(),
    mechanism=st.sampled_from(["XOAUTH2", "OAUTHBEARER"]),
)
def test_token_mechanisms_round_trip(username, token, send_initial, mechanism):
    """Google's XOAUTH2 description and RFC 7628 section 3.1: the server hands
    the verifier exactly the user and token the client was given."""
    seen: list[tuple[str, str]] = []

    def check_token(authcid: str, given: str) -> bool:
        seen.append((authcid, given))
        return True

    if mechanism == "XOAUTH2":
        client: ClientMechanism = XOAuth2(username, token)
        server: ServerMechanism = XOAuth2Server(check_token)
    else:
        client, server = OAuthBearer(username, token), OAuthBearerServer(check_token)
    step = run_exchange(client, server, send_initial=send_initial)
    assert step == Step(success=True, authcid=username)
    assert seen == [(username, token)]
    assert client.is_complete


@given(authzid=credentials_text | st.just(""), send_initial=st.booleans())
def test_external_round_trip(authzid, send_initial):
    """RFC 4422 appendix A: the server's verifier sees the client's authzid."""
    seen: list[str] = []

    def check_external(requested: str) -> bool:
        seen.append(requested)
        return True

    step = run_exchange(
        External(authzid), ExternalServer(check_external), send_initial=send_initial
    )
    assert step == Step(success=True, authzid=authzid or None)
    assert seen == [authzid]


@settings(max_examples=20, deadline=None)
@given(
    mechanism=st.sampled_from(["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]),
    send_initial=st.booleans(),
)
def test_initial_response_may_be_held_back(mechanism, send_initial):
    """RFC 4954 section 4: a client may send AUTH without the initial
    response and give it after the server's empty challenge."""
    stored = {
        "SCRAM-SHA-1": scram_credentials("pw", b"saltsaltsaltsalt", 4096, "sha1"),
        "SCRAM-SHA-256": scram_credentials("pw", b"saltsaltsaltsalt", 4096, "sha256"),
    }
    verifiers = Verifiers(
        check_password=lambda authcid, password, authzid: password == "pw",
        lookup_scram_sha1=lambda authcid: stored["SCRAM-SHA-1"],
        lookup_scram_sha256=lambda authcid: stored["SCRAM-SHA-256"],
    )
    client = client_mechanism(mechanism, username="u", password="pw")
    server = server_mechanism(mechanism, verifiers)
    assert run_exchange(client, server, send_initial=send_initial) == Step(
        success=True, authcid="u"
    )


# --- arbitrary input ------------------------------------------------------------

SCRAM_SHA256_RECORD = scram_credentials("pw", b"saltsaltsaltsalt", 4096, "sha256")


def _server_factories():
    return {
        "PLAIN": lambda: PlainServer(refuse_all),
        "LOGIN": lambda: LoginServer(refuse_all),
        "CRAM-MD5": lambda: CramMd5Server(lambda authcid: "pw"),
        "SCRAM-SHA-1": lambda: ScramSha1Server(
            lambda authcid: scram_credentials("pw", b"saltsaltsaltsalt", 1, "sha1")
        ),
        "SCRAM-SHA-256": lambda: ScramSha256Server(lambda authcid: SCRAM_SHA256_RECORD),
        "XOAUTH2": lambda: XOAuth2Server(refuse_all),
        "OAUTHBEARER": lambda: OAuthBearerServer(refuse_all),
        "EXTERNAL": lambda: ExternalServer(refuse_all),
    }


SERVER_FACTORIES = _server_factories()
# Valid first messages, so that the arbitrary bytes also reach later steps.
VALID_FIRST = {
    "SCRAM-SHA-1": b"n,,n=user,r=abc",
    "SCRAM-SHA-256": b"n,,n=user,r=abc",
    "LOGIN": b"user",
    "XOAUTH2": b"user=u\x01auth=Bearer t\x01\x01",
    "OAUTHBEARER": b"n,,\x01auth=Bearer t\x01\x01",
}


@given(
    mechanism=st.sampled_from(sorted(SERVER_FACTORIES)),
    initial=st.none() | st.binary(max_size=80),
    responses=st.lists(st.binary(max_size=120), max_size=4),
    valid_first=st.booleans(),
)
def test_arbitrary_bytes_only_fail_server_mechanisms(mechanism, initial, responses, valid_first):
    """RFC 4954 section 4: whatever a client sends, a server mechanism answers
    with a Step (a challenge or a failure), never an exception; only a valid
    exchange can succeed, and these bytes are none."""
    server = SERVER_FACTORIES[mechanism]()
    if valid_first and mechanism in VALID_FIRST:
        initial = VALID_FIRST[mechanism]
    step = server.start(initial)
    for response in responses:
        if step.is_final:
            break
        step = server.step(response)
    if step.is_final:
        assert not step.success
        assert step.reason
        assert server.is_complete
        with pytest.raises(SaslError):
            server.step(b"")


CLIENT_FACTORIES = {
    "PLAIN": lambda: Plain("u", "pw"),
    "LOGIN": lambda: Login("u", "pw"),
    "CRAM-MD5": lambda: CramMd5("u", "pw"),
    "SCRAM-SHA-1": lambda: ScramSha1("u", "pw", nonce="abc", min_iterations=1),
    "SCRAM-SHA-256": lambda: ScramSha256("u", "pw", nonce="abc", min_iterations=1),
    "XOAUTH2": lambda: XOAuth2("u", "t"),
    "OAUTHBEARER": lambda: OAuthBearer("u", "t"),
    "EXTERNAL": lambda: External(),
}


@given(
    mechanism=st.sampled_from(sorted(CLIENT_FACTORIES)),
    send_initial=st.booleans(),
    challenges=st.lists(
        st.binary(max_size=80) | st.just(b"r=abcdef,s=c2FsdA==,i=1"), min_size=1, max_size=4
    ),
)
def test_arbitrary_challenges_raise_only_sasl_error(mechanism, send_initial, challenges):
    """RFC 4422 section 3.5: a client mechanism fed arbitrary challenges
    answers with bytes or raises SaslError, nothing else."""
    client = CLIENT_FACTORIES[mechanism]()
    if send_initial:
        client.initial_response()
    for challenge in challenges:
        try:
            assert isinstance(client.respond(challenge), bytes)
        except SaslError:
            break


# --- factories, strongest, API contracts ----------------------------------------


def test_strongest_follows_the_fixed_preference():
    """RFC 4954 section 4 leaves the choice to the client: SCRAM-SHA-256 >
    SCRAM-SHA-1 > CRAM-MD5 > PLAIN > LOGIN; token mechanisms only with a token,
    EXTERNAL only when asked; names match in any case."""
    everything = ["login", "PLAIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2",
                  "OAUTHBEARER", "EXTERNAL"]  # fmt: skip
    assert strongest(everything) == "SCRAM-SHA-256"
    assert strongest(["LOGIN", "PLAIN", "CRAM-MD5", "SCRAM-SHA-1"]) == "SCRAM-SHA-1"
    assert strongest(["LOGIN", "PLAIN", "CRAM-MD5"]) == "CRAM-MD5"
    assert strongest(["login", "plain"]) == "PLAIN"
    assert strongest(["LOGIN"]) == "LOGIN"
    assert strongest(["XOAUTH2", "OAUTHBEARER", "EXTERNAL"]) is None
    assert strongest(["XOAUTH2", "PLAIN"], has_token=True) == "XOAUTH2"
    assert strongest(["XOAUTH2", "OAUTHBEARER"], has_token=True) == "OAUTHBEARER"
    assert strongest(["PLAIN"], has_token=True, has_password=False) is None
    assert strongest(everything, use_external=True) == "EXTERNAL"
    assert strongest(everything, ["PLAIN", "LOGIN"]) == "PLAIN"
    assert strongest([]) is None


def test_client_mechanism_factory():
    """RFC 4422 section 3.1: a mechanism is chosen by name, case-insensitively."""
    expected = {
        "PLAIN": Plain,
        "LOGIN": Login,
        "CRAM-MD5": CramMd5,
        "SCRAM-SHA-1": ScramSha1,
        "SCRAM-SHA-256": ScramSha256,
        "XOAUTH2": XOAuth2,
        "OAUTHBEARER": OAuthBearer,
        "EXTERNAL": External,
    }
    assert set(expected) == set(MECHANISMS)
    for name, cls in expected.items():
        mechanism = client_mechanism(name.lower(), username="u", password="pw", token="t")
        assert type(mechanism) is cls and mechanism.name == name
    with pytest.raises(SaslError, match="unknown"):
        client_mechanism("DIGEST-MD5", username="u", password="pw")
    with pytest.raises(SaslError, match="password"):
        client_mechanism("PLAIN", username="u")
    with pytest.raises(SaslError, match="token"):
        client_mechanism("XOAUTH2", username="u", password="pw")


def test_server_mechanism_factory_and_advertised_mechanisms():
    """RFC 4954 section 3: the server advertises, and serves, exactly the
    mechanisms it has verifiers for."""
    assert Verifiers().mechanisms == ()
    verifiers = Verifiers(
        check_password=lambda *args: True, lookup_scram_sha256=lambda authcid: None
    )
    assert verifiers.mechanisms == ("SCRAM-SHA-256", "PLAIN", "LOGIN")
    assert type(server_mechanism("plain", verifiers)) is PlainServer
    assert type(server_mechanism("SCRAM-SHA-256", verifiers)) is ScramSha256Server
    with pytest.raises(SaslError):
        server_mechanism("CRAM-MD5", verifiers)
    full = Verifiers(
        check_password=lambda *args: True,
        lookup_password=lambda authcid: None,
        lookup_scram_sha1=lambda authcid: None,
        lookup_scram_sha256=lambda authcid: None,
        check_token=lambda *args: True,
        check_external=lambda authzid: True,
    )
    assert full.mechanisms == MECHANISMS
    for name in MECHANISMS:
        assert server_mechanism(name, full).name == name


def test_server_mechanisms_refuse_calls_out_of_order():
    """RFC 4422 section 3.4: one exchange per mechanism object; misuse is the
    caller's error (SaslError, a ProtocolError)."""
    server = PlainServer(lambda *args: True)
    with pytest.raises(SaslError):
        server.step(b"\x00u\x00p")
    server.start(b"\x00u\x00p")
    with pytest.raises(SaslError):
        server.start(None)
    with pytest.raises(ProtocolError):
        server.step(b"")


def test_client_initial_response_is_given_once():
    """RFC 4422 section 3.3: the initial response goes out once; a second
    call is the caller's error, as is a challenge after PLAIN's message."""
    client = Plain("u", "pw")
    client.initial_response()
    with pytest.raises(SaslError):
        client.initial_response()
    with pytest.raises(SaslError):
        client.respond(b"")


def test_step_invariants():
    """RFC 4422 section 3.6: an exchange ends in success or failure with a
    reason; a challenge carries no outcome."""
    assert Step.continue_with(b"x").is_final is False
    assert Step.succeed("u").is_final is True
    with pytest.raises(SaslError):
        Step(challenge=b"", success=True)
    with pytest.raises(SaslError):
        Step()
    with pytest.raises(SaslError):
        Step(success=True, reason="why")


def test_scram_credentials_validation():
    """RFC 5802 section 5.1: the iteration count is at least 1 and the keys
    are one hash's output."""
    with pytest.raises(SaslError):
        ScramCredentials(salt=b"s", iterations=0, stored_key=b"k", server_key=b"k")
    with pytest.raises(SaslError):
        ScramCredentials(salt=b"", iterations=1, stored_key=b"k", server_key=b"k")
    with pytest.raises(SaslError):
        scram_credentials("pw", b"salt", 1, "md5")
    record = scram_credentials("pw", b"salt", 1, "SHA-1")
    assert len(record.stored_key) == len(record.server_key) == 20


def test_credentials_that_prepare_to_nothing_never_reach_the_check():
    """RFC 4616 section 2: "If preparation fails or results in an empty
    string, verification SHALL fail". A soft hyphen (U+00AD, mapped to
    nothing by SASLprep) as the password must not match an unset one."""
    asked: list[str] = []

    def check(user: str, password: str, authzid: str | None) -> bool:
        asked.append(password)
        return password == ""

    step = PlainServer(check).start("\0alice\0\u00ad".encode())
    assert not step.success
    assert asked == []

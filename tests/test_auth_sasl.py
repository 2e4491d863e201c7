"""AUTH in the engines driven by smtp_core.sasl mechanisms (RFC 4954 with
RFC 7677 SCRAM-SHA-256 and RFC 4616 PLAIN), end to end over a ConnectionPair."""

from __future__ import annotations

import base64

import pytest
from helpers import ConnectionPair

from smtp_core import Auth, AuthResponse, Reply, ServerConfig, State, sasl


def run_exchange(
    pair: ConnectionPair, client: sasl.ClientMechanism, server: sasl.ServerMechanism
) -> Reply:
    """Drive AUTH until the server mechanism reaches an outcome."""
    received = pair.send(Auth(client.name, client.initial_response()))
    assert len(received) == 1 and isinstance(received[0], Auth)
    step = server.start(received[0].initial_response)
    while not step.is_final:
        assert step.challenge is not None
        [reply] = pair.reply(Reply(334, base64.b64encode(step.challenge).decode("ascii")))
        assert isinstance(reply, Reply) and reply.code == 334
        answer = client.respond(base64.b64decode(reply.text))
        [response] = pair.send(AuthResponse(answer))
        assert response == AuthResponse(answer)
        step = server.step(answer)
    final = Reply(235, "ok") if step.success else Reply(535, "bad credentials", "5.7.8")
    [reply] = pair.reply(final)
    assert isinstance(reply, Reply)
    return reply


def scram_lookup(password: str):
    salt = b"0123456789abcdef"
    credentials = sasl.scram_credentials(password, salt, 4096, "sha256")
    return lambda user: credentials if user == "jörg" else None


@pytest.mark.parametrize(("password", "accepted"), [("pencil", True), ("crayon", False)])
def test_scram_sha_256_over_the_engines(password: str, accepted: bool):
    pair = ConnectionPair(ServerConfig(auth_mechanisms=("SCRAM-SHA-256",)))
    pair.hello()
    client = sasl.ScramSha256("jörg", password)
    server = sasl.ScramSha256Server(scram_lookup("pencil"))
    reply = run_exchange(pair, client, server)
    assert reply.code == (235 if accepted else 535)
    assert pair.client.authenticated is pair.server.authenticated is accepted
    assert pair.client.state is pair.server.state is State.GREETED
    if accepted:
        assert client.is_complete  # the server proved it knows the key too


def test_plain_with_initial_response_under_implicit_tls():
    """RFC 4616 over RFC 4954, on a connection secure from the start (RFC 8314)."""
    pair = ConnectionPair(ServerConfig(auth_mechanisms=("PLAIN",)), tls=True)
    pair.hello()
    seen = []

    def check(user: str, password: str, authzid: str) -> bool:
        seen.append((user, password, authzid))
        return password == "s3cret"

    reply = run_exchange(pair, sasl.Plain("ann", "s3cret"), sasl.PlainServer(check))
    assert reply.code == 235 and seen == [("ann", "s3cret", "")]

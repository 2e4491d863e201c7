"""A handler's mistakes are the server's problem, never the session's end:
on every server backend a hook that returns a reply its command cannot take
gets the client 451 4.3.0 (logged) and the session goes on, and a failing
on_connect gives a greeting RFC 5321 allows. smtplib is the peer."""

from __future__ import annotations

import logging
import smtplib

import pytest
from servers import SERVER_BACKENDS, serving

import smtp_core as smtp


class Confused:
    """Answers RCPT to one address, and the end of every message, with 354."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def on_rcpt(self, session, envelope, rcpt):  # type: ignore[no-untyped-def]
        if rcpt.forward_path.local_part == "odd":
            return smtp.Reply(354, "odd")
        return None

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        self.messages.append(body.read())
        return smtp.Reply(354, "again")


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_reply_the_command_cannot_take_becomes_451_and_the_session_goes_on(
    backend: str, caplog: pytest.LogCaptureFixture
):
    """RFC 5321 4.3.2: RCPT and the end of DATA take 2yz, 4yz or 5yz only."""
    caplog.set_level(logging.ERROR, logger="smtp_core.server")
    handler = Confused()
    with serving(backend, handler) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c")
        client.mail("a@example.org")
        code, text = client.rcpt("odd@example.org")
        assert (code, text[:5]) == (451, b"4.3.0")
        assert client.rcpt("b@example.org")[0] == 250
        code, text = client.data(b"Subject: x\r\n\r\nbody\r\n")
        assert (code, text[:5]) == (451, b"4.3.0")
        assert client.noop()[0] == 250  # still talking
    assert handler.messages == [b"Subject: x\r\n\r\nbody\r\n"]
    said = [record.getMessage().split(":")[0] for record in caplog.records]
    assert said == ["on_rcpt returned Reply(354, 'odd')", "on_message returned Reply(354, 'again')"]


class Unwelcoming:
    def on_connect(self, session):  # type: ignore[no-untyped-def]
        raise RuntimeError("no database")


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_failing_on_connect_greets_with_421_and_closes(backend: str):
    """RFC 5321 3.1: the greeting is 220, or 554, or 421 when the service is
    not available; a temporary local failure is the 421."""
    with (
        serving(backend, Unwelcoming()) as port,
        pytest.raises(smtplib.SMTPConnectError) as refused,
    ):
        smtplib.SMTP("127.0.0.1", port, timeout=10)
    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error.startswith(b"4.3.0 ")


class PerRecipient:
    """LMTP: delivers to bob, finds carol's mailbox full; or gives a list of
    the wrong length when told to."""

    def __init__(self, wrong_length: bool) -> None:
        self.wrong_length = wrong_length

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        if self.wrong_length:
            return [None]
        full = smtp.Reply(452, "mailbox full", "4.2.2")
        return [full if r.forward_path.local_part == "carol" else None for r in envelope.recipients]


@pytest.mark.parametrize("wrong_length", [False, True], ids=["one-each", "wrong-length"])
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_an_lmtp_handler_answers_each_recipient(
    backend: str, wrong_length: bool, caplog: pytest.LogCaptureFixture
):
    """RFC 2033 4.2: after the content, one reply per accepted recipient, in
    order; on_message may give them as a list (None: the default). A list of
    the wrong length is the handler's mistake: 451 4.3.0 for each, logged."""
    from servers import connected

    caplog.set_level(logging.ERROR, logger="smtp_core.server")
    server_config = smtp.ServerConfig(lmtp=True)
    client_config = smtp.ClientConfig(lmtp=True)
    with (
        serving(backend, PerRecipient(wrong_length), config=server_config) as port,
        connected("sync", port, timeout=10, config=client_config) as client,
    ):
        result = client.sendmail(
            "a@example.org", ["bob@example.org", "carol@example.org"], b"Subject: x\r\n\r\nhi\r\n"
        )
    codes = {str(address): reply.code for address, reply in result.delivered.items()}
    if wrong_length:
        assert codes == {"bob@example.org": 451, "carol@example.org": 451}
        [record] = caplog.records
        assert "not one Reply or None for each of the 2 recipients" in record.getMessage()
    else:
        assert codes == {"bob@example.org": 250, "carol@example.org": 452}
        assert caplog.records == []

"""Shared test helpers: drain an engine, and a client wired to a server."""

from __future__ import annotations

from collections.abc import Iterable

from smtp_core import (
    NEED_DATA,
    PAUSED,
    ClientConfig,
    ClientConnection,
    Command,
    Event,
    MessageChunk,
    MessageEnd,
    Reply,
    ServerConfig,
    ServerConnection,
)


def drain(conn: ServerConnection | ClientConnection) -> list[Event]:
    """Every event the connection has ready, up to NEED_DATA or PAUSED."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        events.append(event)  # type: ignore[arg-type]
        if type(event).__name__ == "ConnectionClosed":
            return events


def merge_chunks(events: Iterable[Event]) -> list[Event]:
    """Events with consecutive MessageChunks joined into one (chunk
    boundaries carry no meaning)."""
    merged: list[Event] = []
    for event in events:
        if isinstance(event, MessageChunk) and merged and isinstance(merged[-1], MessageChunk):
            merged[-1] = MessageChunk(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def feed_in_pieces(conn: ServerConnection | ClientConnection, data: bytes, sizes: Iterable[int]):
    """Feed ``data`` split at the given piece sizes, draining after each piece."""
    events: list[Event] = []
    position = 0
    for size in sizes:
        if position >= len(data):
            break
        conn.receive_data(data[position : position + size])
        position += size
        events += drain(conn)
    if position < len(data):
        conn.receive_data(data[position:])
        events += drain(conn)
    return events


class ConnectionPair:
    """A ClientConnection wired back to back to a ServerConnection.

    Every byte the client sends goes to the server and every reply the server
    sends goes to the client; the helpers assert that what one side sent is
    what the other side received.
    """

    def __init__(
        self,
        server_config: ServerConfig | None = None,
        client_config: ClientConfig | None = None,
        *,
        greet: bool = True,
        tls: bool = False,
    ) -> None:
        self.server = ServerConnection(server_config, tls=tls)
        self.client = ClientConnection(client_config, tls=tls)
        self.wire_to_server = bytearray()
        self.wire_to_client = bytearray()
        if greet:
            assert self.server.next_event() is PAUSED
            self.reply(self.server.greeting())

    def send(self, *events: Command | MessageChunk | MessageEnd) -> list[Event]:
        """The client sends ``events``; returns what the server hands out."""
        data = b"".join(self.client.send(event) for event in events)
        self.wire_to_server += data
        self.server.receive_data(data)
        return drain(self.server)

    def reply(self, reply: Reply) -> list[Event]:
        """The server sends ``reply``; returns what the client hands out."""
        data = self.server.send(reply)
        self.wire_to_client += data
        self.client.receive_data(data)
        received = drain(self.client)
        for event in received:
            if isinstance(event, Reply):
                # The server engine may add an enhanced code (RFC 2034); the
                # rest of the reply arrives as it was sent.
                assert (event.code, event.lines) == (reply.code, reply.lines), (event, reply)
                assert reply.enhanced in (None, event.enhanced), (event, reply)
        return received

    def command(self, command: Command, reply: Reply) -> Reply:
        """One command answered by ``reply``; checks both sides agree."""
        received = self.send(command)
        assert received == [command], received
        answers = self.reply(reply)
        answer = answers[0]
        # A reply that ends the session (221, 421) is followed by the close.
        assert all(type(a).__name__ == "ConnectionClosed" for a in answers[1:]), answers
        assert isinstance(answer, Reply)
        assert answer.answers == command
        assert self.client.state is self.server.state
        return answer

    def hello(self) -> Reply:
        from smtp_core import Ehlo

        self.send(Ehlo("client.example"))
        answers = self.reply(self.server.ehlo_reply())
        assert self.client.extensions == self.server.extensions
        reply = answers[0]
        assert isinstance(reply, Reply)
        return reply

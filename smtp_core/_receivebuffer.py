# Line extraction in linear time and bounded memory.
#
# Bytes are appended to one bytearray and consumed from the front by moving a
# start offset; the consumed prefix is dropped only when it is most of the
# buffer, so a burst of pipelined commands costs O(n), not O(n^2). (A read
# that finds nothing unread is kept as the bytes it came in until more
# follow: the usual command arrives alone and is one slice.) A search
# for LF resumes where the previous one stopped, so each byte is scanned once
# however the input was split. A line longer than the limit is not kept: its
# first ``limit`` octets are remembered, the rest is dropped as it arrives,
# and the caller hears about it once its LF has come, so the verdict is the
# same whether the line came in one read or one byte at a time.
from __future__ import annotations

__all__ = ["Line", "ReceiveBuffer", "TooLong"]


class Line:
    """A complete line without its ending; ``crlf`` is False for a bare LF.

    Made once per command line: a plain slotted class, treated as immutable."""

    __slots__ = ("crlf", "data")

    def __init__(self, data: bytes, crlf: bool) -> None:
        self.data = data
        self.crlf = crlf

    def __eq__(self, other: object) -> bool:
        return type(other) is Line and (self.data, self.crlf) == (other.data, other.crlf)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Line({self.data!r}, crlf={self.crlf})"


class TooLong:
    """A line that exceeded the limit; ``head`` is its first ``limit`` octets."""

    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __eq__(self, other: object) -> bool:
        return type(other) is TooLong and self.head == other.head

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TooLong({self.head!r})"


class ReceiveBuffer:
    __slots__ = ("_data", "_discarding", "_scanned", "_start")

    def __init__(self) -> None:
        # A read that arrives while nothing is unread is kept as it came (the
        # usual command, one line a read: no copy into the bytearray, and its
        # line is one slice); more bytes after it make it a bytearray.
        self._data: bytes | bytearray = b""
        self._start = 0
        self._scanned = 0  # offset below which no LF lies (from _start)
        self._discarding: bytes | None = None  # head of an over-long line

    def __len__(self) -> int:
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    @property
    def overflowing(self) -> bool:
        """True while the bytes of an over-long line are being dropped."""
        return self._discarding is not None

    def feed(self, data: bytes) -> None:
        buffer = self._data
        if self._start == len(buffer):
            self._data = data if type(data) is bytes else bytes(data)
            self._start = 0
            return
        if not isinstance(buffer, bytearray):
            self._data = buffer = bytearray(memoryview(buffer)[self._start :])
            self._start = 0
        elif self._start * 2 >= len(buffer):
            del buffer[: self._start]
            self._start = 0
        buffer += data

    def take_line(self, limit: int) -> Line | TooLong | None:
        """The next line if one is complete, else None.

        ``limit`` counts the line with its ending, as RFC 5321 4.5.3.1 does.
        """
        data = self._data
        start = self._start
        index = data.find(b"\n", start + self._scanned)
        if index < 0:
            if self._discarding is not None:
                self._start = len(data)
                self._scanned = 0
            elif len(data) - start > limit:
                self._discarding = bytes(data[start : start + limit])
                self._start = len(data)
                self._scanned = 0
            else:
                self._scanned = len(data) - start
            return None
        self._start = index + 1
        self._scanned = 0
        if self._discarding is not None:
            head, self._discarding = self._discarding, None
            return TooLong(head)
        if index + 1 - start > limit:
            return TooLong(bytes(data[start : start + limit]))
        if index > start and data[index - 1] == 13:
            return Line(bytes(data[start : index - 1]), True)
        return Line(bytes(data[start:index]), False)

    def take(self, size: int) -> bytes:
        """Up to ``size`` octets from the front."""
        start = self._start
        chunk = bytes(self._data[start : start + size])
        self._start = start + len(chunk)
        self._scanned = 0
        return chunk

    def take_all(self) -> bytes:
        chunk = bytes(self._data[self._start :])
        self._data = b""
        self._start = 0
        self._scanned = 0
        return chunk

    def prepend(self, data: bytes) -> None:
        """Put bytes back at the front (the content reader hands back what
        follows the end of a message)."""
        self._data = data + self._data[self._start :]
        self._start = 0
        self._scanned = 0

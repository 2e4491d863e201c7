# Message content: the hot path, in both directions.
#
# Reading (server): the end of content is exactly CRLF "." CRLF. A virtual
# CRLF is put in front of the content so that the end at the very start and
# a dot-stuffed first line need no special case. Each pass finds the end with
# one bytes.find; when it is not there yet, everything is handed out except a
# tail of at most four octets that could begin it ("\r", "\r\n", "\r\n.",
# "\r\n.\r"). Because no CRLF pair and no "\r\n." is ever cut in two, the
# un-stuffing is one bytes.replace and the bare CR/LF test is three counts.
# Line lengths are checked by jumping a window of the line limit with rfind,
# so the Python loop runs once per ``limit`` octets, not once per line.
#
# Writing (client): the mirror image. A trailing CR is held back until the
# next chunk shows whether an LF follows, so CRLF normalisation and stuffing
# work across any chunk boundary.
from __future__ import annotations

from ._config import BareLinePolicy
from ._events import MessageEnd, MessageRefused, Reply, _trusted
from ._util import LocalProtocolError

__all__ = ["ContentReader", "ContentWriter"]

_END = b"\r\n.\r\n"


def _normalize(data: bytes) -> bytes:
    """Every bare CR and bare LF becomes CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _has_bare_line_ending(data: bytes) -> bool:
    # Blank out the pairs (same length, so CPython copies and patches in
    # place), then two memchr scans: cheaper than three counts.
    blanked = data.replace(b"\r\n", b"  ")
    return b"\r" in blanked or b"\n" in blanked


# Beyond this many CRLF "." split points in one read, the end is found with
# bytes.find instead of a look at each part, so content made of dot lines
# costs no Python loop per line.
_MAX_SCANNED_PARTS = 64


class ContentReader:
    """Turns the bytes after a 354 into content chunks and the end of content."""

    __slots__ = (
        "_fault",
        "_fault_rank",
        "_final",
        "_held",
        "_input",
        "_line",
        "_max_line",
        "_max_size",
        "_policy",
        "_size",
        "_virtual",
        "leftover",
    )

    def __init__(self, max_line: int | None, max_size: int | None, policy: BareLinePolicy) -> None:
        self._max_line = max_line
        self._max_size = max_size
        self._policy = policy
        self._held = b"\r\n"  # the virtual CRLF before the content
        self._virtual = 2
        self._input: list[bytes] = []
        self._line = 0  # octets of the unfinished output line so far
        self._size = 0
        self._fault: Reply | None = None
        self._fault_rank = 0
        self._final: MessageEnd | MessageRefused | None = None
        self.leftover = b""
        """What followed the end of content: pipelined commands."""

    def feed(self, data: bytes) -> None:
        self._input.append(data)

    @property
    def final(self) -> MessageEnd | MessageRefused | None:
        """The end event, once the end of content has been read."""
        return self._final

    def read(self) -> bytes | None:
        """Process everything fed so far; the content it yields, if any.

        After a call, ``final`` says whether the end was reached (and then
        ``leftover`` holds the bytes after it).
        """
        if self._final is not None or not self._input:
            return None
        if len(self._input) == 1 and not self._held:
            buf = self._input[0]
        else:
            buf = self._held + b"".join(self._input)
        self._input.clear()
        # Split once at every CRLF "." (they never overlap): joining the parts
        # with CRLF un-stuffs, and the end of content is a split point whose
        # next part starts with CRLF, or is empty with another split after it
        # ("\r\n.\r\n.\r\n": the first end wins).
        parts = buf.split(b"\r\n.")
        count = len(parts)
        end = -1
        if count > 1:
            if count <= _MAX_SCANNED_PARTS:
                for index in range(1, count):
                    part = parts[index]
                    if part[:2] == b"\r\n" or (not part and index + 1 < count):
                        end = index
                        break
            elif (position := buf.find(_END)) >= 0:
                parts = buf[:position].split(b"\r\n.")
                end = len(parts)
                parts.append(b"")
        if end > 0:
            body = b"\r\n".join(parts[:end]) + b"\r\n"
            cut = sum(map(len, parts[:end])) + 3 * (end - 1)
            self.leftover = buf[cut + 5 :]
            self._held = b""
        else:
            # Hold back a tail that could begin the end: "\r", "\r\n",
            # "\r\n." or "\r\n.\r". The last two are the final split point.
            if buf.endswith(b"\r\n.\r") or buf.endswith(b"\r\n."):
                keep = 4 if buf[-1] == 13 else 3
                parts.pop()
            elif buf.endswith(b"\r\n"):
                keep = 2
                parts[-1] = parts[-1][:-2]
            elif buf.endswith(b"\r"):
                keep = 1
                parts[-1] = parts[-1][:-1]
            else:
                keep = 0
            body = b"\r\n".join(parts) if len(parts) > 1 else parts[0] if parts else b""
            self._held = buf[len(buf) - keep :] if keep else b""
        out = self._check(body) if body else b""
        if end > 0:
            if self._fault is not None:
                self._final = _trusted(MessageRefused, self._fault)
            else:
                self._final = _trusted(MessageEnd)
        return out or None

    def _check(self, out: bytes) -> bytes:
        # Every rule is checked on all content, even after one was broken, and
        # the refusal is chosen by a fixed order at the end: so the verdict is
        # the same however the bytes were split into reads.
        if self._virtual:
            out = out[self._virtual :]
            self._virtual = 0
        if self._policy is not BareLinePolicy.ALLOW and _has_bare_line_ending(out):
            if self._policy is BareLinePolicy.REJECT:
                self._refuse(
                    0, 550, "5.5.2", "bare CR or LF in message content: lines must end with CRLF"
                )
            else:
                out = _normalize(out)
        if self._max_line is not None and not self._lines_fit(out, self._max_line):
            self._refuse(
                1,
                552,
                "5.5.2",
                f"message line longer than {self._max_line} octets with its CRLF",
            )
        self._size += len(out)
        if self._max_size is not None and self._size > self._max_size:
            self._refuse(
                2, 552, "5.3.4", f"message larger than the {self._max_size} octets allowed"
            )
        return b"" if self._fault is not None else out

    def _lines_fit(self, out: bytes, limit: int) -> bool:
        # RFC 5321 4.5.3.1.6: a line with its CRLF is at most ``limit`` octets.
        # Jump from line start to line start, each time to the last newline
        # within ``limit`` octets, so the loop runs once per ``limit`` octets;
        # keep the length of the unfinished line exact even past a fault, so
        # the next read is judged the same way.
        size = len(out)
        rfind = out.rfind
        fits = True
        # The line carried over from the previous read must end first.
        room = limit - self._line
        newline = rfind(b"\n", 0, room) if room > 0 else -1
        if newline < 0:
            if size < room:
                self._line += size
                return True
            fits = False
            newline = out.find(b"\n")
            if newline < 0:
                self._line += size
                return False
        start = newline + 1
        while size - start > limit:
            newline = rfind(b"\n", start, start + limit)
            if newline < 0:
                fits = False
                newline = out.find(b"\n", start + limit)
                if newline < 0:
                    self._line = size - start
                    return False
            start = newline + 1
        newline = rfind(b"\n", start)
        self._line = size - (newline + 1 if newline >= 0 else start)
        return fits

    def _refuse(self, rank: int, code: int, enhanced: str, text: str) -> None:
        if self._fault is None or rank < self._fault_rank:
            self._fault = Reply(code, text, enhanced)
            self._fault_rank = rank


class ContentWriter:
    """Dot-stuffs and CRLF-normalises content a client sends, chunk by chunk."""

    __slots__ = ("_held_cr", "_line_start", "_policy")

    def __init__(self, policy: BareLinePolicy) -> None:
        self._policy = policy
        self._held_cr = False
        self._line_start = True

    def write(self, data: bytes) -> bytes:
        if self._held_cr:
            data = b"\r" + data
        held_cr = data.endswith(b"\r")
        if held_cr:
            data = data[:-1]
        if data and _has_bare_line_ending(data):
            if self._policy is BareLinePolicy.REJECT:
                raise LocalProtocolError(
                    "bare CR or LF in message content (the client's policy is REJECT); "
                    "lines must end with CRLF"
                )
            data = _normalize(data)
        self._held_cr = held_cr
        if not data:
            return b""
        # RFC 5321 4.5.2: a line that starts with a dot gets one more.
        out = b"\r\n..".join(data.split(b"\r\n."))
        if self._line_start and data[0] == 46:
            out = b"." + out
        self._line_start = data[-1] == 10
        return out

    def end(self) -> bytes:
        """The bytes that end the content: a CRLF if the last line lacks one,
        then the lone dot."""
        out = b""
        if self._held_cr:
            if self._policy is BareLinePolicy.REJECT:
                raise LocalProtocolError(
                    "bare CR at the end of message content (the client's policy is REJECT)"
                )
            self._held_cr = False
            self._line_start = True
            out = b"\r\n"
        if not self._line_start:
            out += b"\r\n"
        return out + b".\r\n"

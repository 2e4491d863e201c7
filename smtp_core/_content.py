# Message content: the hot path, in both directions.
#
# Reading (server): the end of content is exactly CRLF "." CRLF. A CRLF is
# pretended in front of the content, so that the end at the very start and a
# dot-stuffed first line need no special case. Each pass finds the end with
# one bytes.find; when it is not there yet, everything is handed out except a
# tail that could begin it ("\r", or the "." or ".\r" after a CRLF, which is
# kept to be looked at again with the next read). The CRLF of a tail has
# already been handed out (or is the pretended one): it is content whatever
# follows, so it is only remembered, never handed out twice. Because no CRLF
# pair and no "\r\n." is ever cut in two, the un-stuffing is one
# bytes.split and join, and the bare CR/LF test one replace and two scans.
# The common read (no dot at a line start before the end, if any) takes a
# fast path: one find and at most one slice, no split and no copy of the
# read; the find starts from a memchr for the first dot. Line lengths are
# checked by jumping a window of the line limit with rfind, so the Python
# loop runs once per ``limit`` octets, not once per line. On large content
# both checks pass runs of lines of one length (base64) in strided slices.
#
# Writing (client): the mirror image. A trailing CR is held back until the
# next chunk shows whether an LF follows, so CRLF normalisation and stuffing
# work across any chunk boundary.
from __future__ import annotations

import re

from ._config import BareLinePolicy
from ._events import MessageEnd, MessageRefused, Reply, _trusted
from ._util import LocalProtocolError

__all__ = ["ContentReader", "ContentWriter"]

_END = b"\r\n.\r\n"


def _normalize(data: bytes) -> bytes:
    """Every bare CR and bare LF becomes CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _has_bare_line_ending(data: bytes) -> bool:
    """Whether ``data`` has a CR not followed by LF or an LF not after a CR.

    Most large content is lines of one length (base64: 76 octets and a CRLF
    a line), and a run of such lines is checked without a look at each: the
    CR and the LF positions of the whole run are strided slices, which must
    be all CR and all LF (see _run); those pairs are blanked in a copy of the
    run, and a memchr for CR and for LF then finds any other. Irregular
    stretches go to the replace in blocks that start and end at a line start
    (growing while the lines stay irregular), so no CRLF is cut in two."""
    size = len(data)
    if size < _RUNS_FROM:
        return _has_bare_by_replace(data)
    find = data.find
    start = 0  # a line start: everything before it is checked
    block = _BLOCK
    while start < size:
        newline = find(b"\n", start)
        if newline < 0:
            return find(b"\r", start) >= 0  # no line end left: any CR is bare
        if newline == start or data[newline - 1] != 13:
            return True  # an LF not after a CR (at start: after an LF, or first)
        length = newline + 1 - start
        run = _run(data, newline, length, returns=True)
        if run * length >= _RUN_OCTETS:
            stop = newline + (run - 1) * length + 1  # after the run's last LF
            lines = bytearray(memoryview(data)[start:stop])
            zeros = bytes(run)
            lines[length - 2 :: length] = zeros
            lines[length - 1 :: length] = zeros
            # A CR or LF left is bare, or a pair inside a line: ask the replace.
            if (13 in lines or 10 in lines) and _has_bare_by_replace(data[start:stop]):
                return True
            block = _BLOCK
        else:
            stop = data.rfind(b"\n", start, start + block) + 1 or newline + 1
            if _has_bare_by_replace(data[start:stop]):
                return True
            block *= 8
        start = stop
    return False


def _has_bare_by_replace(data: bytes) -> bool:
    # Blank out the pairs (same length, so CPython copies and patches in
    # place), then two memchr scans: cheaper than three counts.
    blanked = data.replace(b"\r\n", b"  ")
    return b"\r" in blanked or b"\n" in blanked


def _run(data: bytes, end: int, length: int, returns: bool) -> int:
    """How many lines of ``length`` octets in a row end at ``end``, ``end +
    length``, and so on: an LF at each, and a CR before it when ``returns``.

    Looked at in strided slices over spans growing fourfold, so the cost
    follows the run found, never the rest of ``data``."""
    run = 0
    span = _RUN_PROBE
    while True:
        first = end + run * length  # the next line end to look at
        stop = first + span * length
        found = _LFS(data[first:stop:length]).end()  # type: ignore[union-attr]
        if returns and found:
            found = min(found, _CRS(data[first - 1 : stop - 1 : length]).end())  # type: ignore[union-attr]
        run += found
        if found < span:
            return run
        span *= 4


# How many LFs (CRs) a bytes starts with: a regex repeat is a tight loop,
# where bytes.lstrip(chars) calls memchr for every octet.
_LFS = re.compile(b"\n*").match
_CRS = re.compile(b"\r*").match


# Content from this size up is checked in runs of lines of one length.
_RUNS_FROM = 4096
# A run is checked in one step when it holds this many octets or more: so a
# step, a few calls, always covers enough content to pay for itself, however
# the lines fall.
_RUN_OCTETS = 4096
# Lines in the first span _run looks at.
_RUN_PROBE = 16
# Octets of irregular lines first checked by the replace (then 8 times more).
_BLOCK = 2048


# Where a line may start with a dot is searched for in windows from this
# size, doubling, so dense dots cost few calls and a lone dot little search.
_DOT_WINDOW = 2048


def _dot_line(data: bytes) -> int:
    """Where the first CRLF "." is in ``data``, or -1: ``data.find(b"\r\n.")``,
    quicker on content with few dots (base64 has none). A memchr finds the
    next dot, and the search is made only from there, a window at a time;
    content without a dot costs the memchr alone."""
    if len(data) <= _DOT_WINDOW:
        return data.find(b"\r\n.")
    find = data.find
    start = 0  # no CRLF "." has its dot before this
    window = _DOT_WINDOW
    while (dot := find(b".", start)) >= 0:
        position = find(b"\r\n.", dot - 2 if dot >= 2 else 0, dot + window)
        if position >= 0:
            return position
        start = dot + window  # the window held every dot before this
        window *= 2
    return -1


# Beyond this many CRLF "." split points in one read, the end is found with
# bytes.find instead of a look at each part, so content made of dot lines
# costs no Python loop per line.
_MAX_SCANNED_PARTS = 64


# Events are immutable: every message's end can be the same one.
_MESSAGE_END = _trusted(MessageEnd)


# Members as plain names for the per-read checks (Enum member lookups take a
# slow path on Python 3.11; see _state.CLOSED).
_ALLOW = BareLinePolicy.ALLOW
_REJECT = BareLinePolicy.REJECT


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
        "leftover",
    )

    def __init__(self, max_line: int | None, max_size: int | None, policy: BareLinePolicy) -> None:
        self._max_line = max_line
        self._max_size = max_size
        self._policy = policy
        # Held back for the next read: b"", b"\r", or a CRLF (the pretended
        # one, or one already handed out) maybe followed by "." or ".\r".
        self._held = b"\r\n"
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
        held = self._held
        if len(self._input) == 1 and (not held or held == b"\r\n"):
            data = self._input[0]
            out = self._read_plain(data, line_start=bool(held))
            if out is not None:
                self._input.clear()
                return out or None
        return self._read_split()

    def _read_plain(self, data: bytes, line_start: bool) -> bytes | None:
        """The fast path: one read after nothing held back (so mid-line) or
        after a CRLF. The checked content, or None when the read needs the
        general path: a dot starting a line that is not the end, or a tail
        that could begin the end."""
        if not data:
            return b""
        if line_start and data[0] == 46:  # "."
            return None
        position = _dot_line(data)
        if position < 0:
            if data[-1] == 13:  # "\r": its LF, if any, comes with the next read
                return None
            self._held = b"\r\n" if data.endswith(b"\r\n") else b""
            return self._check(data)
        if data[position + 3 : position + 5] != b"\r\n":
            return None
        out = self._check(data[: position + 2])
        self._finish(data[position + 5 :])
        return out

    def _read_split(self) -> bytes | None:
        """The general path: the read (after the held tail, when that
        matters) split once at every CRLF "." (they never overlap). Joining
        the parts with CRLF un-stuffs, and the end of content is a split point
        whose next part starts with CRLF, or is empty with another split
        after it ("\r\n.\r\n.\r\n": the first end wins)."""
        held = self._held
        data = self._input[0] if len(self._input) == 1 else b"".join(self._input)
        self._input.clear()
        if not data:
            return None
        if not held or (held == b"\r\n" and data[0] != 46):
            buf = data  # mid-line, or a line start without a dot: nothing to join
            skip = 0
        else:
            buf = held + data
            skip = 2 if held[:2] == b"\r\n" else 0  # handed out before, or pretended
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
            leftover = buf[cut + 5 :]
        else:
            # Hold back a tail that could begin the end: "\r" (not handed
            # out yet), or "\r\n." and "\r\n.\r" (the last split point),
            # whose CRLF is handed out now. A final CRLF is handed out and
            # remembered.
            if buf.endswith((b"\r\n.\r", b"\r\n.")):
                keep = 4 if buf[-1] == 13 else 3
                parts[-1] = b""
            elif buf.endswith(b"\r\n"):
                keep = 2
            elif buf[-1:] == b"\r":
                keep = 1
                parts[-1] = parts[-1][:-1]
            else:
                keep = 0
            body = b"\r\n".join(parts) if count > 1 else parts[0]
            self._held = buf[len(buf) - keep :] if keep else b""
        if skip:
            body = body[skip:]
        out = self._check(body) if body else b""
        if end > 0:
            self._finish(leftover)
        return out or None

    def _finish(self, leftover: bytes) -> None:
        self.leftover = leftover
        self._held = b""
        if self._fault is not None:
            self._final = _trusted(MessageRefused, self._fault)
        else:
            self._final = _MESSAGE_END

    def _check(self, out: bytes) -> bytes:
        # Every rule is checked on all content, even after one was broken, and
        # the refusal is chosen by a fixed order at the end: so the verdict is
        # the same however the bytes were split into reads.
        if self._policy is not _ALLOW and _has_bare_line_ending(out):
            if self._policy is _REJECT:
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
        find = out.find
        probe = start  # where a run of lines of one length is looked for next
        gap = _BLOCK  # how far on the next look is, growing while none is found
        while size - start > limit:
            if start >= probe:
                # A run of lines of one length that fits (strided LFs, as in
                # _has_bare_line_ending) is passed in one step: any LF between
                # two of the run's only makes lines shorter.
                first = find(b"\n", start, start + limit)
                if first >= 0:
                    length = first + 1 - start
                    run = _run(out, first, length, returns=False)
                    if run * length >= _RUN_OCTETS:
                        start = first + (run - 1) * length + 1
                        gap = _BLOCK
                        continue
                probe = start + gap
                gap *= 4
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
        out = b"\r\n..".join(data.split(b"\r\n.")) if _dot_line(data) >= 0 else data
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

"""Message content: un-stuffing, the end of data, bare line endings, limits.

RFC 5321 4.1.1.4 (end of data), 4.5.2 (transparency), 4.5.3.1.6 (text line),
RFC 1870 (SIZE); the SMTP smuggling research (bare LF/CR end-of-data variants).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_core import (
    BareLinePolicy,
    ClientConfig,
    LocalProtocolError,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    ServerConfig,
)
from smtp_core._content import ContentReader, ContentWriter, _dot_line, _has_bare_line_ending


def read_all(data: bytes, *, pieces: int | None = None, **options: object):
    """Run bytes through a ContentReader; returns (content, final, leftover)."""
    reader = ContentReader(
        options.get("max_line", 1000),  # type: ignore[arg-type]
        options.get("max_size"),  # type: ignore[arg-type]
        options.get("policy", BareLinePolicy.REJECT),  # type: ignore[arg-type]
    )
    content = b""
    step = pieces or len(data) or 1
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
        out = reader.read()
        if out:
            content += out
        if reader.final is not None:
            break
    return content, reader.final, reader.leftover


def test_end_of_data_is_crlf_dot_crlf_and_last_crlf_belongs_to_content():
    """RFC 5321 4.1.1.4: the first CRLF of CRLF.CRLF ends the last line."""
    content, final, leftover = read_all(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert content == b"Subject: x\r\n\r\nbody\r\n"
    assert final == MessageEnd()
    assert leftover == b"QUIT\r\n"


def test_empty_message_ends_at_once():
    """RFC 5321 4.1.1.4: a lone dot right after the 354 is an empty message."""
    content, final, leftover = read_all(b".\r\nRSET\r\n")
    assert (content, final, leftover) == (b"", MessageEnd(), b"RSET\r\n")


def test_leading_dots_are_removed():
    """RFC 5321 4.5.2: a line's first dot is deleted when more follows."""
    content, final, _ = read_all(b"..\r\n..x\r\n.y\r\nz.\r\n...\r\n.\r\n")
    assert content == b".\r\n.x\r\ny\r\nz.\r\n..\r\n"
    assert final == MessageEnd()


@pytest.mark.parametrize(
    "body",
    [
        b"a\n.\nb",  # bare LF . bare LF
        b"a\r.\rb",  # bare CR . bare CR
        b"a\n.\r\nb",  # bare LF . CRLF
        b"a\r\n.\nb",  # CRLF . bare LF
        b"a\r.\r\nb",  # bare CR . CRLF
        b"a\r\n.\rb",  # CRLF . bare CR
        b"a\r\r\n.\r\r\nb",  # CR CRLF . CR CRLF
        b"a\r\n\x00.\r\nb",  # NUL before the dot
        b"a\r\n.\x00\r\nb",  # NUL after the dot
        b"a\r\n .\r\nb",  # space before the dot
    ],
)
@pytest.mark.parametrize("policy", list(BareLinePolicy))
def test_smuggling_variants_never_end_the_message(body: bytes, policy: BareLinePolicy):
    """SMTP smuggling (SEC Consult, 2023; CVE-2023-51764/51765/51766): only
    CRLF.CRLF ends the content, under every bare line ending policy."""
    data = b"x\r\n" + body + b"\r\n.\r\nAFTER\r\n"
    for pieces in (None, 1, 2, 3):
        content, final, leftover = read_all(data, pieces=pieces, policy=policy)
        assert final is not None
        # The end found is the real one, so what follows it is AFTER...
        assert b"AFTER\r\n".startswith(leftover)
        if pieces is None:
            assert leftover == b"AFTER\r\n"
        if policy is BareLinePolicy.ALLOW:
            assert final == MessageEnd()
            # A dot after a real CRLF is transparency and is removed (4.5.2).
            assert content == (b"x\r\n" + body + b"\r\n").replace(b"\r\n.", b"\r\n")


def test_bare_lf_is_refused_by_default_after_the_real_end():
    """Postfix's default: a bare LF in content is refused with 550 5.5.2, and
    only once the real CRLF.CRLF has come."""
    _content, final, leftover = read_all(b"a\nb\r\n.\r\nNOOP\r\n")
    assert isinstance(final, MessageRefused)
    assert final.reply.code == 550 and final.reply.enhanced == "5.5.2"
    assert leftover == b"NOOP\r\n"


def test_bare_line_endings_normalize_to_crlf():
    content, final, _ = read_all(b"a\nb\rc\r\n.\r\n", policy=BareLinePolicy.NORMALIZE)
    assert content == b"a\r\nb\r\nc\r\n"
    assert final == MessageEnd()


def test_line_longer_than_limit_is_refused_with_552_and_rest_discarded():
    """RFC 5321 4.5.3.1.6: 1000 octets with the CRLF; the rest is read."""
    ok = b"x" * 998 + b"\r\n"
    content, final, _ = read_all(ok + b".\r\n")
    assert final == MessageEnd() and content == ok
    for pieces in (None, 1, 7, 999):
        bad = b"y\r\n" + b"x" * 999 + b"\r\n" + b"z" * 5000 + b"\r\n.\r\nQUIT\r\n"
        content, final, leftover = read_all(bad, pieces=pieces)
        assert isinstance(final, MessageRefused)
        assert final.reply.code == 552
        if pieces is None:
            assert leftover == b"QUIT\r\n"


def test_stuffed_dot_does_not_count_toward_line_length():
    """RFC 5321 4.5.3.1.6: the transparency dot is not counted."""
    line = b"." + b"x" * 997 + b"\r\n"
    content, final, _ = read_all(b"." + line + b".\r\n")
    assert final == MessageEnd() and content == line


def test_size_limit_refuses_with_552_534():
    """RFC 1870 section 6.3: content over the limit gets 552 (5.3.4, RFC 3463)."""
    _content, final, leftover = read_all(
        b"a" * 50 + b"\r\n" + b"b" * 60 + b"\r\n.\r\nX", max_size=100
    )
    assert isinstance(final, MessageRefused)
    assert (final.reply.code, final.reply.enhanced) == (552, "5.3.4")
    assert leftover == b"X"


def test_flood_without_end_costs_bounded_memory():
    """A peer sending content with no end keeps at most four octets held."""
    reader = ContentReader(None, None, BareLinePolicy.ALLOW)
    total = 0
    for _ in range(200):
        reader.feed(b"z" * 65536 + b"\r\n.\r")
        total += len(reader.read() or b"")
        assert len(reader._held) <= 4
    assert reader.final is None
    # Every "\r\n.z" but the last lost its transparency dot; of the final
    # "\r\n.\r" the CRLF is content, handed out already, and ".\r" is held.
    assert total == 200 * 65540 - 199 - 2


@given(st.binary(max_size=300), st.integers(1, 50))
def test_reader_is_split_invariant(body: bytes, piece: int):
    data = body + b"\r\n.\r\nTAIL"
    whole = read_all(data, policy=BareLinePolicy.ALLOW)
    split = read_all(data, pieces=piece, policy=BareLinePolicy.ALLOW)
    assert whole[0] == split[0]
    assert whole[1] == split[1]


def write_all(chunks: list[bytes], policy: BareLinePolicy = BareLinePolicy.NORMALIZE) -> bytes:
    writer = ContentWriter(policy)
    return b"".join(writer.write(c) for c in chunks) + writer.end()


def test_writer_stuffs_dots_and_terminates():
    """RFC 5321 4.5.2: the client doubles a leading dot."""
    assert write_all([b".a\r\n.\r\n"]) == b"..a\r\n..\r\n.\r\n"
    assert write_all([b""]) == b".\r\n"
    assert write_all([b"no final newline"]) == b"no final newline\r\n.\r\n"


@pytest.mark.parametrize("at", [0, 1, 2047, 2048, 9000, 39_000])
def test_writer_stuffs_a_dot_line_anywhere_in_large_content(at: int):
    """RFC 5321 4.5.2 on a large chunk, which is searched for dot lines from
    dot to dot: a lone dot line and a dot-led line deep in base64-like lines
    are doubled, and dots inside lines are left alone."""
    run = (b"Q" * 76 + b"\r\n") * 520
    body = run[:at] + b"a.b\r\n.\r\n.x\r\n" + run[at:]
    expected = body.replace(b"\r\n.", b"\r\n..")
    if expected.startswith(b"."):
        expected = b"." + expected
    assert write_all([body]) == expected + b".\r\n"
    content, final, _ = read_all(write_all([body]))
    assert final == MessageEnd() and content == body


@pytest.mark.parametrize(
    "chunks",
    [
        [b"a\r", b"\n.b\r\n"],  # chunk ends between CR and LF, dot after
        [b"a\r\n", b".b\r\n"],  # chunk ends just before a dot
        [b"a\r\n.", b"b\r\n"],  # chunk ends on the dot
        [b"a", b"\r", b"\n", b".", b"\r", b"\n"],
    ],
)
def test_writer_stuffing_across_chunk_boundaries(chunks: list[bytes]):
    whole = write_all([b"".join(chunks)])
    assert write_all(chunks) == whole


def test_writer_normalizes_bare_line_endings_by_default():
    assert write_all([b"a\nb\r", b"c\n"]) == b"a\r\nb\r\nc\r\n.\r\n"
    assert write_all([b"a\r"]) == b"a\r\n.\r\n"


def test_writer_reject_policy_raises_without_changing_state():
    writer = ContentWriter(BareLinePolicy.REJECT)
    assert writer.write(b"ok\r\n") == b"ok\r\n"
    with pytest.raises(LocalProtocolError, match="bare CR or LF"):
        writer.write(b"bad\nline")
    assert writer.write(b".x\r\n") == b"..x\r\n"
    assert writer.end() == b".\r\n"


def test_configs_refuse_allow_on_client():
    with pytest.raises(LocalProtocolError):
        ClientConfig(bare_line_ending=BareLinePolicy.ALLOW)
    assert ServerConfig(bare_line_ending=BareLinePolicy.ALLOW)


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_writer_then_reader_gives_back_normalized_content(chunks: list[bytes]):
    """Stuffing then un-stuffing is the identity on CRLF-normalised content."""
    wire = write_all(chunks)
    content, final, leftover = read_all(wire, policy=BareLinePolicy.REJECT, max_line=None)
    body = b"".join(chunks)
    expected = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert final == MessageEnd()
    assert content == expected
    assert leftover == b""
    assert MessageChunk(content).data == content


def test_first_end_wins_when_ends_overlap():
    """RFC 5321 4.1.1.4: "\\r\\n.\\r\\n.\\r\\n" ends at the first CRLF.CRLF; the
    rest belongs to the command stream."""
    for pieces in (None, 1, 2):
        content, final, leftover = read_all(b"a\r\n.\r\n.\r\n", pieces=pieces)
        assert (content, final) == (b"a\r\n", MessageEnd())
        if pieces is None:
            assert leftover == b".\r\n"
    assert read_all(b".\r\n.\r\n")[2] == b".\r\n"


def test_content_made_of_dot_lines_is_unstuffed_and_ended_in_bulk():
    """RFC 5321 4.5.2 with many stuffed lines in one read (the path that finds
    the end with bytes.find instead of looking at each stuffed line)."""
    wire = b"..x\r\n" * 500 + b".\r\nNEXT"
    for pieces in (None, 97):
        content, final, leftover = read_all(wire, pieces=pieces)
        assert content == b".x\r\n" * 500
        assert final == MessageEnd()
        if pieces is None:
            assert leftover == b"NEXT"


@given(st.lists(st.sampled_from([b"..", b".", b"\r\n", b"x", b"\r", b"\n"]), max_size=400))
def test_dot_heavy_content_is_split_invariant(tokens: list[bytes]):
    data = b"".join(tokens) + b"\r\n.\r\nTAIL"
    whole = read_all(data, policy=BareLinePolicy.ALLOW, max_line=None)
    for piece in (1, 3, 64):
        split = read_all(data, pieces=piece, policy=BareLinePolicy.ALLOW, max_line=None)
        assert split[:2] == whole[:2]


@pytest.mark.parametrize("split_at", [602, 1000, 1003, 1500, 2000])
def test_line_limit_holds_across_reads(split_at: int):
    """RFC 5321 4.5.3.1.6: a valid body is never refused because of where a
    read ended (a regression: the unfinished line was once over-counted)."""
    body = b"aaaa\r\n" * 100 + b"b" * 500 + b"\r\n" + b"c" * 998 + b"\r\n"
    wire = body + b".\r\n"
    reader = ContentReader(1000, None, BareLinePolicy.REJECT)
    out = b""
    for piece in (wire[:split_at], wire[split_at:]):
        reader.feed(piece)
        out += reader.read() or b""
    assert reader.final == MessageEnd()
    assert out == body
    too_long = b"d" * 999 + b"\r\n.\r\n"
    for cut in (1, 500, 999, 1000):
        reader = ContentReader(1000, None, BareLinePolicy.REJECT)
        reader.feed(too_long[:cut])
        reader.read()
        reader.feed(too_long[cut:])
        reader.read()
        assert isinstance(reader.final, MessageRefused)


@given(
    st.lists(st.sampled_from([b"a", b"bb", b"\r\n", b"cccc", b"\n"]), max_size=60),
    st.lists(st.integers(1, 9), min_size=1, max_size=10),
)
def test_line_limit_verdict_matches_a_naive_count_for_any_reads(
    tokens: list[bytes], sizes: list[int]
):
    """RFC 5321 4.5.3.1.6 with a limit of 10 octets: refused exactly when some
    line (with its line ending) is longer, however the reads fall."""
    body = b"".join(tokens) + b"\r\n"
    wire = body.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    too_long = any(len(line) + 1 > 10 for line in body.split(b"\n")[:-1])
    reader = ContentReader(10, None, BareLinePolicy.ALLOW)
    position = 0
    index = 0
    while reader.final is None:
        size = sizes[index % len(sizes)]
        index += 1
        reader.feed(wire[position : position + size])
        position += size
        reader.read()
    assert isinstance(reader.final, MessageRefused) == too_long


# Large content: runs of lines of one length are checked with strided slices
# (base64 is lines of 76 octets and a CRLF), the rest by the replace; the
# verdicts must be those of a plain count whatever the shape.


@st.composite
def large_content(draw: st.DrawFn) -> bytes:
    """Over 4 KiB of lines: runs of one length and irregular stretches, then
    a few edits anywhere (a bare CR or LF, a CRLF inside a line, a dot after
    a CRLF, an over-long line)."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            length = draw(st.integers(2, 120))  # with the CRLF
            count = draw(st.integers(1, 200))
            parts.append((b"x" * (length - 2) + b"\r\n") * count)
        else:
            lines = draw(st.lists(st.binary(max_size=90), max_size=40))
            parts.append(
                b"".join(line.replace(b"\r", b"r").replace(b"\n", b"n") + b"\r\n" for line in lines)
            )
    data = b"".join(parts)
    if len(data) < 4096:
        data += (b"y" * 76 + b"\r\n") * (4096 // 78 + 1)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\n.", b".", b"z" * 1200]))
        if draw(st.booleans()):
            data = data[:at] + edit + data[at:]
        else:
            data = data[:at] + edit + data[at + len(edit) :]
    return data


def naive_bare(data: bytes) -> bool:
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


@given(large_content())
def test_bare_line_ending_check_in_runs_matches_a_count(data: bytes):
    """RFC 5321 2.3.8: a CR or LF outside a CRLF pair is found in any shape
    of content, in runs of equal lines as well as elsewhere."""
    assert _has_bare_line_ending(data) == naive_bare(data)


def test_bare_line_ending_check_finds_each_kind_in_a_run():
    """A run of base64-like lines with one byte changed, at every position
    of a line, at the start, middle and end of the run; and a CRLF pair
    inside a line (the stride jumps over it) is no bare line ending."""
    line = b"Q" * 76 + b"\r\n"
    run = line * 200
    assert not _has_bare_line_ending(run)
    for line_index in (0, 1, 100, 199):
        for column in range(len(line)):
            at = line_index * len(line) + column
            for byte in (b"\r", b"\n"):
                changed = run[:at] + byte + run[at + 1 :]
                assert _has_bare_line_ending(changed) == naive_bare(changed), (at, byte)
    inner_pair = run[:3900] + b"\r\n" + run[3902:]
    assert not naive_bare(inner_pair) and not _has_bare_line_ending(inner_pair)


@given(large_content())
def test_dot_line_search_matches_find(data: bytes):
    """RFC 5321 4.5.2: the first CRLF "." is found wherever it is, among
    dots at any density."""
    assert _dot_line(data) == data.find(b"\r\n.")
    dotted = data.replace(b"x", b".", data.count(b"x") // 2)
    assert _dot_line(dotted) == dotted.find(b"\r\n.")


@given(
    large_content(),
    st.sampled_from([80, 100, 1000]),
    st.lists(st.integers(1, 70000), min_size=1, max_size=5),
)
def test_large_content_verdicts_match_a_naive_count_for_any_reads(
    body: bytes, limit: int, sizes: list[int]
):
    """RFC 5321 4.5.3.1.6 (line limit), 2.3.8 (bare CR/LF, refused first) and
    4.5.2 (un-stuffing) on large content, however the reads fall."""
    body += b"\r\n"
    wire = body.replace(b"\r\n.", b"\r\n..")
    if wire.startswith(b"."):
        wire = b"." + wire
    wire += b".\r\n"
    lines = body.split(b"\n")[:-1]
    bare = naive_bare(body)
    too_long = any(len(line) + 1 > limit for line in lines)
    reader = ContentReader(limit, None, BareLinePolicy.REJECT)
    out = b""
    position = 0
    index = 0
    while reader.final is None and position < len(wire):
        size = sizes[index % len(sizes)]
        index += 1
        reader.feed(wire[position : position + size])
        position += size
        out += reader.read() or b""
    final = reader.final
    if bare:
        assert isinstance(final, MessageRefused) and final.reply.code == 550
    elif too_long:
        assert isinstance(final, MessageRefused) and final.reply.code == 552
    else:
        assert final == MessageEnd() and out == body


def test_dot_line_search_finds_a_dot_line_at_every_window_edge():
    """The search jumps from dot to dot and looks a window on from each:
    a CRLF "." just inside, on and just past each edge is found."""
    for first_dot in (0, 1, 2, 3, 500):
        for offset in [*range(2040, 2060), *range(6130, 6160), *range(14330, 14350)]:
            at = first_dot + offset
            data = bytearray(b"x" * 20000)
            data[first_dot] = 46
            data[at : at + 3] = b"\r\n."
            data = bytes(data)
            assert _dot_line(data) == data.find(b"\r\n."), (first_dot, offset)


@pytest.mark.parametrize("length", [2, 3, 78, 1000])
def test_line_after_a_run_is_checked(length: int):
    """RFC 5321 4.5.3.1.6: a run of equal lines is passed in one step; the
    line right after it (too long, or just fitting) still gets its verdict,
    and so does the line before it."""
    run = (b"x" * (length - 2) + b"\r\n") * 300
    fitting = b"y" * 998 + b"\r\n"
    too_long = b"y" * 999 + b"\r\n"
    for before in (b"", b"short\r\n", fitting, too_long):
        for after in (fitting, too_long):
            body = before + run + after + run
            _content, final, _ = read_all(body + b".\r\n")
            refused = too_long in (before, after)
            assert isinstance(final, MessageRefused) == refused, (length, before[:5], after[:5])

"""SSE framing per the WHATWG spec, fed in every possible split."""

from __future__ import annotations

import logging
import random

import pytest

from oxedit._http.sse import DropWarnings, ServerSentEvent, SSEDecoder

COMPLETED = (
    b'event: media_generation_completed\ndata: {"generation_id":"g1","status":"succeeded"}\n\n'
)


def decode_all(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def every_split(stream: bytes) -> list[list[ServerSentEvent]]:
    """Decode `stream` split at every single point, and also as three pieces."""
    results = [decode_all(stream), decode_all(*[stream[i : i + 1] for i in range(len(stream))])]
    for i in range(len(stream) + 1):
        results.append(decode_all(stream[:i], stream[i:]))
    for i in range(0, len(stream), 7):
        for j in range(i, len(stream), 5):
            results.append(decode_all(stream[:i], stream[i:j], stream[j:]))
    return results


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_gives_the_same_events(newline: bytes) -> None:
    stream = (
        b": keep-alive"
        + newline
        + newline
        + COMPLETED.replace(b"\n", newline)
        + b"event: repo_updated"
        + newline
        + b"data:x"
        + newline
        + newline
    )
    expected = [
        ServerSentEvent(
            "media_generation_completed", b'{"generation_id":"g1","status":"succeeded"}'
        ),
        ServerSentEvent("repo_updated", b"x"),
    ]
    for events in every_split(stream):
        assert events == expected


def test_data_without_space_and_multiline_data() -> None:
    events = decode_all(b"data:one\ndata: two\ndata:  three\n\n")
    assert events == [ServerSentEvent("message", b"one\ntwo\n three")]


def test_comments_only_dispatch_nothing() -> None:
    assert decode_all(b": keep-alive\n\n: keep-alive\n\n") == []


def test_event_without_data_is_not_dispatched_and_resets_type() -> None:
    events = decode_all(b"event: lonely\n\ndata: after\n\n")
    assert events == [ServerSentEvent("message", b"after")]


def test_incomplete_trailing_event_is_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: x\ndata: 1\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent("x", b"1")]


def test_crlf_split_between_chunks_is_one_line_ending() -> None:
    # CR ends one chunk, LF opens the next: a single line ending, not an empty line.
    assert decode_all(b"data: a\r", b"\ndata: b\r\n\r\n") == [ServerSentEvent("message", b"a\nb")]


def test_bom_is_dropped_even_when_split() -> None:
    stream = b"\xef\xbb\xbfdata: x\n\n"
    for events in every_split(stream):
        assert events == [ServerSentEvent("message", b"x")]


def test_field_without_colon_and_unknown_fields() -> None:
    assert decode_all(b"data\nfoo: bar\n\n") == [ServerSentEvent("message", b"")]


def test_id_field_and_retry_ignored() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 7\nretry: 3000\ndata: x\n\nretry: soon\ndata: y\n\n")
    assert events == [ServerSentEvent("message", b"x", "7"), ServerSentEvent("message", b"y", "7")]
    assert decoder.feed(b"id: a\x00b\ndata: z\n\n")[0].id == "7"  # ids with NUL are ignored


def test_many_events_in_one_chunk() -> None:
    assert len(decode_all(COMPLETED * 1000)) == 1000


def test_an_event_over_the_limit_is_dropped_however_it_is_split() -> None:
    big = b"event: media_generation_completed\ndata: " + b"x" * 5000 + b"\n\n"
    stream = big + COMPLETED
    for pieces in (
        [stream],
        [stream[i : i + 7] for i in range(0, len(stream), 7)],
        [stream[:10], stream[10:4000], stream[4000:]],
    ):
        decoder = SSEDecoder(max_event_bytes=1000)
        events = [e for piece in pieces for e in decoder.feed(piece)]
        assert [e.data for e in events] == [b'{"generation_id":"g1","status":"succeeded"}']
        assert decoder.dropped == 1


def test_many_data_lines_over_the_limit_are_dropped() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    events = decoder.feed(b"data: " + b"y" * 60 + b"\ndata: " + b"y" * 60 + b"\n\n" + COMPLETED)
    assert len(events) == 1 and decoder.dropped == 1


@pytest.mark.timeout(30)
def test_a_huge_line_in_small_chunks_costs_linear_time() -> None:
    # 64 MiB in 4 KiB chunks: re-joining the partial line on every chunk (quadratic) copies
    # ~512 TB here and never ends; keeping the pieces does 16,384 appends.
    decoder = SSEDecoder(max_event_bytes=1024 * 1024)
    piece = b"z" * 4096
    assert decoder.feed(b"data: ") == []
    for _ in range(16 * 1024):
        assert decoder.feed(piece) == []
    assert decoder.feed(b"\n\n" + COMPLETED)[0].event == "media_generation_completed"
    assert decoder.dropped == 1


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_oversized_events_are_warned_about_once_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    warnings = DropWarnings(100, every=100, interval=60.0, clock=lambda: now[0])
    big = b"data: " + b"x" * 200 + b"\n\n"
    with caplog.at_level(logging.WARNING, logger="oxedit"):
        # Two connections' decoders share the client's throttle.
        for decoder in (SSEDecoder(max_event_bytes=100, warnings=warnings) for _ in range(2)):
            assert decoder.feed(big * 25 + COMPLETED)[0].event == "media_generation_completed"
        assert len(_warnings(caplog)) == 1  # 50 drops, one line
        assert "longer than 100 bytes (Limits.max_event_bytes)" in _warnings(caplog)[0]
        decoder = SSEDecoder(max_event_bytes=100, warnings=warnings)
        decoder.feed(big * 51)  # the 101st drop since the first line: a count
        assert _warnings(caplog)[1:] == [
            "dropped 100 more server-sent event(s) longer than 100 bytes "
            "(Limits.max_event_bytes), 101 in all"
        ]
        now[0] = 61.0  # a minute later one more drop is reported at once
        decoder.feed(big)
        assert _warnings(caplog)[2:] == [
            "dropped 1 more server-sent event(s) longer than 100 bytes "
            "(Limits.max_event_bytes), 102 in all"
        ]
        decoder.feed(big * 3)
        warnings.flush()  # at close: what is left unsaid
        warnings.flush()  # nothing more
    assert _warnings(caplog)[3:] == [
        "dropped 3 more server-sent event(s) longer than 100 bytes "
        "(Limits.max_event_bytes), 105 in all"
    ]


# -- the fast path: the same events as the line parser, whatever the stream and its chunking --

TYPES = ["media_generation_completed", "repo_updated", "", "médià", "x:y"]


def _random_line(rng: random.Random) -> bytes:
    """One line of a valid stream, without its ending: mostly the usual shapes, some odd."""
    kind = rng.random()
    if kind < 0.3:
        return b"event:" + b" " * rng.randint(0, 2) + rng.choice(TYPES).encode()
    if kind < 0.65:
        size = rng.choice([0, 1, 5, 40, 90, 150])  # some over the limit below (100)
        value = bytes(rng.choice(b'ab{}":, \x00\xc3\xa9') for _ in range(size))
        if rng.random() < 0.1:  # a line whose rest looks like a frame's start
            value += b"event: repo_updated"
        return b"data:" + b" " * rng.randint(0, 2) + value
    if kind < 0.72:
        return rng.choice([b": keep-alive", b":", b": hello: x"])
    if kind < 0.79:
        return b"id: " + rng.choice([b"7", b"", b"a\x00b", b"\xc3\xa9"])
    if kind < 0.83:
        return rng.choice([b"retry: 3000", b"data", b"event", b"foo: bar", b"id"])
    return b""  # a blank line: the end of an event


def _random_stream(rng: random.Random, usual: str) -> bytes:
    if rng.random() < 0.5:  # the usual wire: LF, `event: usual` then one `data:` line
        frames = [
            b"event: %s\ndata: %s\n\n"
            % (
                (usual if rng.random() < 0.9 else rng.choice(TYPES)).encode(),
                bytes(rng.choice(b"xx\x00 :\r") for _ in range(rng.choice([0, 3, 50, 120]))),
            )
            for _ in range(rng.randint(1, 30))
        ]
        for _ in range(rng.choice([0, 0, 1, 3])):  # with odd lines between frames
            odd = rng.choice(
                [
                    _random_line(rng) + rng.choice([b"\n", b"\r", b"\r\n"]),
                    # A frame whose second line, or rest of a line, looks like a frame.
                    b"data: zzevent: %s\ndata: yy\n\n" % usual.encode(),
                    b"data: %s\nevent: %s\ndata: yy\n\n" % (b"o" * 150, usual.encode()),
                ]
            )
            frames.insert(rng.randint(0, len(frames)), odd)
        stream = b"".join(frames)
    else:
        endings = rng.choice([[b"\n"], [b"\r\n"], [b"\r"], [b"\n", b"\r\n", b"\r"]])
        stream = b"".join(
            _random_line(rng) + rng.choice(endings) for _ in range(rng.randint(1, 60))
        )
    if rng.random() < 0.1:
        stream = b"\xef\xbb\xbf" + stream
    return stream


def _random_chunks(rng: random.Random, stream: bytes) -> list[bytes]:
    """`stream` cut anywhere, or where the state carried over matters most: at line endings
    and just before an `event: ` (inside a line, or opening one)."""
    if rng.random() < 0.2:
        return [stream]
    anywhere = range(len(stream) + 1)
    telling = [
        i
        for i in anywhere
        if stream[i - 1 : i] in (b"\n", b"\r") or stream.startswith(b"event: ", i)
    ]
    pool = telling if telling and rng.random() < 0.6 else anywhere
    cuts = sorted(set(rng.choices(pool, k=rng.randint(1, 12))))
    return [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def _line_parser(chunks: list[bytes], limit: int) -> tuple[list[ServerSentEvent], int]:
    """What the line parser alone (the general path, always exact) makes of `chunks`."""
    decoder = SSEDecoder(max_event_bytes=limit)
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events, decoder.dropped


@pytest.mark.parametrize("seed", range(20))
def test_the_fast_path_decodes_as_the_line_parser(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        wanted = rng.choice(TYPES) or "message"
        stream = _random_stream(rng, wanted)
        chunks = _random_chunks(rng, stream)
        limit = rng.choice([100, 1000])
        expected, dropped = _line_parser(chunks, limit)
        decoder = SSEDecoder(max_event_bytes=limit)
        data = [d for chunk in chunks for d in decoder.feed_data(chunk, wanted)]
        assert data == [e.data for e in expected if e.event == wanted], (stream, chunks)
        assert decoder.dropped == dropped


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: zz", b"event: t\ndata: yy\n\n"],  # the rest of a line
        [b"data: " + b"o" * 150 + b"\n", b"event: t\ndata: yy\n\n"],  # an event being dropped
        [b"data: a\n", b"event: t\ndata: yy\n\n"],  # a data line of the same event
        [b"event: u\n", b"event: t\ndata: yy\n\n"],
        [b"data: a\r", b"event: t\ndata: yy\n\n", b"\n"],
        [b": a\r", b"event: t\ndata: yy\n\n", b"\ndata: 1\n\n"],
        [b"\xef\xbb", b"\xbfevent: t\ndata: yy\n\n"],
        [b"event: t\ndata: yy\n\nevent: t\ndata: " + b"o" * 150 + b"\n\n"],  # over the limit
    ],
)
def test_the_fast_path_reads_on_from_any_state(chunks: list[bytes]) -> None:
    expected, dropped = _line_parser(chunks, 100)
    decoder = SSEDecoder(max_event_bytes=100)
    data = [d for chunk in chunks for d in decoder.feed_data(chunk, "t")]
    assert data == [e.data for e in expected if e.event == "t"]
    assert decoder.dropped == dropped


def test_common_frames_skip_the_line_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = SSEDecoder()
    decoder.feed(b": hello\n\n")  # the first chunk, which may open with a BOM
    parsed: list[bytes] = []
    line_parser = SSEDecoder.feed

    def spy(self: SSEDecoder, chunk: bytes) -> list[ServerSentEvent]:
        parsed.append(chunk)
        return line_parser(self, chunk)

    monkeypatch.setattr(SSEDecoder, "feed", spy)
    data = COMPLETED[40:-2]
    many = decoder.feed_data(COMPLETED * 100 + b"event: x\n", "media_generation_completed")
    assert many == [data] * 100
    assert parsed == [b"event: x\n"]  # only the unfinished frame
    # The end of an event begun before; a frame of another shape among the usual ones.
    odd = b"event: media_generation_completed\ndata: 1\ndata: 2\n\n"
    chunk = b"data: 1\n\n" + COMPLETED * 3 + odd + COMPLETED + COMPLETED[:20]
    assert decoder.feed_data(chunk, "media_generation_completed") == [data] * 3 + [
        b"1\n2",
        data,
    ]
    assert parsed[1:] == [b"data: 1\n\n", odd, COMPLETED[:20]]
    assert decoder.feed_data(COMPLETED[20:] + COMPLETED, "media_generation_completed") == [data] * 2


def test_a_bom_after_the_first_chunk_is_not_dropped() -> None:
    decoder = SSEDecoder()
    assert len(decoder.feed_data(COMPLETED, "media_generation_completed")) == 1
    assert decoder.feed_data(b"\xef\xbb\xbfdata: x\n\n", "message") == []  # "\ufeffdata"

"""SSE framing per the WHATWG spec, fed in every possible split."""

from __future__ import annotations

import logging

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

"""The join state's decision table, without Kafka: what completes a join in each mode,
expiry, late and duplicate pieces, calls of one request id, the changelog and restore."""

from __future__ import annotations

import pytest

from streamdag.engine.envelope import Envelope, OutRecord
from streamdag.engine.joins import JoinState, join_key
from streamdag.kafka import headers as h

SOURCES = ("left", "right", "middle")
WINDOW = 1_000.0


def piece(
    rid: str,
    *,
    kind: str = "result",
    value: bytes = b"v",
    call: str | None = None,
    partition: int = 0,
) -> Envelope:
    headers: h.Headers = [("x-tenant", b"t1")]
    if call is not None:
        headers.append((h.CALL, call.encode()))
    error = None
    if kind == "skip":
        headers.append((h.SKIPPED, b"1"))
    if kind == "error":
        error = h.ErrorInfo("model_error", "boom", "left", 3)
        headers.append((h.ERROR, error.encode()))
    env = Envelope("topic", partition, 0, rid, headers, value, error=error)
    env.request_ts_ms = 5
    return env


def state(mode: str, sources: tuple[str, ...] = SOURCES, **kwargs: object) -> JoinState:
    return JoinState(sources, mode, WINDOW, "changelog", **kwargs)  # type: ignore[arg-type]


def feed(join: JoinState, *pieces: tuple[str, Envelope], now: float = 0.0) -> list[str]:
    """Add pieces in order; the outcome of each completion."""
    outcomes = []
    for source, env in pieces:
        done = join.add(source, env, now)
        if done is not None:
            outcomes.append(done.outcome)
    return outcomes


def test_inner_runs_once_every_source_has_a_result() -> None:
    join = state("inner")
    assert feed(join, ("left", piece("r")), ("right", piece("r"))) == []
    done = join.add("middle", piece("r", value=b"m"), 0.0)
    assert done is not None and done.outcome == "run"
    assert sorted(done.pieces) == list(sorted(SOURCES))
    assert done.pieces["middle"].value == b"m"
    assert done.request_id == "r"
    assert join.entries == {}  # complete: forgotten, with a tombstone


def test_inner_skips_when_a_source_skipped_and_all_arrived() -> None:
    join = state("inner")
    outcomes = feed(
        join, ("left", piece("r")), ("right", piece("r", kind="skip")), ("middle", piece("r"))
    )
    assert outcomes == ["skip"]


@pytest.mark.parametrize("mode", ["inner", "outer", "any"])
def test_an_error_piece_fails_any_join_at_once(mode: str) -> None:
    join = state(mode)
    done = join.add("left", piece("r", kind="error"), 0.0)
    assert done is not None and done.outcome == "error"
    assert done.error_piece is not None
    assert h.get_header(done.error_piece.headers, h.ERROR) is not None
    # The other pieces are counted as they come, then the request is let go.
    assert join.add("right", piece("r"), 1.0) is None
    assert "r" in join.entries
    assert join.add("middle", piece("r"), 2.0) is None
    assert join.entries == {}


def test_inner_expires_naming_the_missing_sources() -> None:
    join = state("inner")
    feed(join, ("left", piece("r")), now=0.0)
    assert join.expire(WINDOW - 1) == []
    [done] = join.expire(WINDOW)
    assert done.outcome == "expired"
    assert join.missing(done) == ["right", "middle"]


def test_outer_runs_with_what_arrived_when_the_window_passes() -> None:
    join = state("outer")
    feed(join, ("left", piece("r")), ("middle", piece("r", kind="skip")), now=0.0)
    [done] = join.expire(WINDOW)
    assert done.outcome == "run"
    assert list(done.pieces) == ["left"]
    # The late piece is not taken for a new request.
    assert join.add("right", piece("r"), WINDOW + 1) is None


def test_outer_with_only_skips_skips() -> None:
    join = state("outer", ("left", "right"))
    outcomes = feed(join, ("left", piece("r", kind="skip")), ("right", piece("r", kind="skip")))
    assert outcomes == ["skip"]


def test_any_runs_the_first_result_and_ignores_the_rest() -> None:
    join = state("any")
    assert feed(join, ("left", piece("r", kind="skip"))) == []
    done = join.add("right", piece("r", value=b"first"), 0.0)
    assert done is not None and done.outcome == "run"
    assert {s: p.value for s, p in done.pieces.items()} == {"right": b"first"}
    assert join.add("middle", piece("r"), 1.0) is None  # all came: forgotten
    assert join.entries == {}


def test_any_expires_when_nothing_ran_in_the_window() -> None:
    join = state("any")
    feed(join, ("left", piece("r", kind="skip")))
    [done] = join.expire(WINDOW)
    assert done.outcome == "expired"


def test_an_answered_request_is_forgotten_after_its_retention() -> None:
    join = state("any")
    feed(join, ("left", piece("r")))
    assert "r" in join.entries
    assert join.expire(join.done_retention_ms - 1) == []
    assert join.expire(join.done_retention_ms) == []
    assert join.entries == {}


def test_a_duplicate_piece_is_ignored() -> None:
    join = state("inner", ("left", "right"))
    assert feed(join, ("left", piece("r", value=b"1")), ("left", piece("r", value=b"2"))) == []
    done = join.add("right", piece("r"), 0.0)
    assert done is not None and done.pieces["left"].value == b"1"


def test_two_calls_of_one_request_id_are_kept_apart() -> None:
    join = state("inner", ("left", "right"))
    first, second = piece("r", call="c1", value=b"1"), piece("r", call="c2", value=b"2")
    assert join_key(first) != join_key(second)
    assert feed(join, ("left", first), ("left", second)) == []
    done = join.add("right", piece("r", call="c2"), 0.0)
    assert done is not None and done.pieces["left"].value == b"2"
    assert done.request_id == "r"
    assert len(join.entries) == 1  # the first call still waits for its right piece


def test_the_changelog_holds_what_is_pending_and_tombstones_what_is_done() -> None:
    join = state("inner", ("left", "right"))
    feed(join, ("left", piece("a", partition=1)), ("left", piece("b", partition=2)))
    records = join.changelog()
    assert [(r.key, r.partition, r.value is not None) for r in records] == [
        ("a", 1, True),
        ("b", 2, True),
    ]
    assert join.changelog() == []  # nothing new since
    feed(join, ("right", piece("a", partition=1)))
    [tombstone] = join.changelog()
    assert (tombstone.key, tombstone.partition, tombstone.value) == ("a", 1, None)


def test_restore_rebuilds_the_state_with_a_fresh_window() -> None:
    join = state("inner", ("left", "right"))
    feed(join, ("left", piece("a", call="c9", value=b"left-a")), now=0.0)
    records: list[OutRecord] = join.changelog()
    restored = state("inner", ("left", "right"))
    for r in records:
        restored.restore(r.partition or 0, r.key, r.value, now_ms=50_000.0)
    assert restored.expire(50_000.0 + WINDOW - 1) == []  # the window starts again
    done = restored.add("right", piece("a", call="c9"), 50_001.0)
    assert done is not None and done.outcome == "run"
    assert done.request_id == "a"
    assert done.pieces["left"].value == b"left-a"
    assert h.get_header(done.pieces["left"].headers, "x-tenant") == "t1"
    restored.restore(0, records[0].key, None)  # a tombstone removes it
    assert restored.entries == {}


def test_pieces_too_large_for_one_changelog_record_fail_the_request() -> None:
    join = state("inner", max_bytes=10_000)
    assert feed(join, ("left", piece("r", value=b"x" * 4_000))) == []
    done = join.add("right", piece("r", value=b"x" * 4_000), 0.0)
    assert done is not None and done.outcome == "oversized"
    assert "over the 10,000-byte limit" in done.detail
    [record] = join.changelog()
    assert record.value is not None and len(record.value) < 1_000  # the pieces are gone
    assert join.add("middle", piece("r"), 1.0) is None  # the late piece lets it go
    assert join.entries == {}


def test_partitions_given_up_are_forgotten() -> None:
    join = state("inner", ("left", "right"))
    feed(join, ("left", piece("a", partition=0)), ("left", piece("b", partition=1)))
    join.drop_partitions([1])
    assert list(join.entries) == ["a"]

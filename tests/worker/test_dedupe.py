"""Deduplication by action id: copies are found, the window ends, the changelog restores the same set."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.worker.dedupe import HOUR_MS, MAX_RUNS, SeenIds, action_id, fingerprint
from pipeline.worker.tasks import OFFSET_KEY, PartitionTask
from tests.factory import minimal_action

T0 = 1_764_340_000_000
DAY_MS = 24 * HOUR_MS


def action(ident: Any, date: int = T0, session: Any = "s-1", app: Any = "shop") -> dict[str, Any]:
    """An action with the fields its identity is made of: application, session and action id."""
    return minimal_action(
        date=date,
        application={"id": app},
        session={"id": session},
        action={"id": ident, "type": "custom", "target": {"name": "checkout"}},
    )


def restored(records: list[tuple[bytes, bytes | None]], window_ms: int = DAY_MS) -> SeenIds:
    """A set rebuilt from changelog records, as a compacting log would keep them (last per key)."""
    last: dict[bytes, bytes | None] = {}
    for key, value in records:
        last.pop(key, None)
        last[key] = value
    seen = SeenIds(window_ms)
    for key, value in last.items():
        seen.restore(key, value)
    return seen


def test_a_copy_is_seen_and_counted_and_the_original_is_not() -> None:
    seen = SeenIds(DAY_MS)
    assert not seen.seen(action("a"))
    assert seen.seen(action("a"))
    assert seen.seen(action("a"))
    assert seen.counts["duplicates"] == 2
    assert len(seen) == 1


def test_the_id_is_the_application_the_session_and_the_action_together() -> None:
    seen = SeenIds(DAY_MS)
    assert not seen.seen(action("a"))
    assert not seen.seen(action("a", session="s-2"))
    assert not seen.seen(action("a", app="other"))
    assert not seen.seen(action("b"))
    assert not seen.seen(action("a", session=None))
    assert seen.seen(action("a", session=None))


def test_actions_without_an_id_are_never_copies() -> None:
    seen = SeenIds(DAY_MS)
    for ident in (None, ""):
        assert not seen.seen(action(ident))
        assert not seen.seen(action(ident))
    no_action = {"date": T0, "session": {"id": "s"}}
    assert not seen.seen(no_action) and not seen.seen(no_action)
    assert action_id(no_action) is None
    assert len(seen) == 0


def test_fingerprints_are_stable_and_separate_the_fields() -> None:
    assert fingerprint("shop", "s-1", "a") == fingerprint("shop", "s-1", "a")
    assert fingerprint("shop", "s-1a", "") != fingerprint("shop", "s-1", "a")
    assert 0 <= fingerprint("x", "y", "z") < 2**64


def test_hours_past_the_window_are_forgotten_and_tombstoned() -> None:
    seen = SeenIds(DAY_MS)
    assert not seen.seen(action("old", date=T0))
    seen.changes()
    # A day and two hours later the old hour is past the window.
    assert not seen.seen(action("new", date=T0 + DAY_MS + 2 * HOUR_MS))
    records = seen.changes()
    assert any(value is None for _, value in records)
    assert seen.seen(action("new", date=T0 + DAY_MS + 2 * HOUR_MS))
    # Too old to tell now: not checked, counted, and not remembered.
    assert not seen.seen(action("old", date=T0))
    assert seen.counts["unchecked"] == 1
    assert len(seen) == 1


def test_the_changelog_restores_the_same_decisions_through_compactions() -> None:
    rng = random.Random(4)
    seen = SeenIds(DAY_MS)
    log: list[tuple[bytes, bytes | None]] = []
    ids = [f"id-{i}" for i in range(400)]
    for flush in range(3 * MAX_RUNS):
        for ident in rng.sample(ids, 20):
            seen.seen(action(ident, date=T0 + rng.randrange(3 * HOUR_MS)))
        log.extend(seen.changes())
        assert restored(log).hours.keys() == seen.hours.keys(), flush
    copy = restored(log)
    assert len(copy) == len(seen)
    assert copy.latest == seen.latest
    for ident in ids:
        for hour in range(4):
            probe = action(ident, date=T0 + hour * HOUR_MS)
            assert copy.seen(dict(probe)) == seen.seen(dict(probe)), (ident, hour)
    # Compaction kept each hour to at most MAX_RUNS runs.
    assert all(len(hour.runs) <= MAX_RUNS for hour in seen.hours.values())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), min_size=1, max_size=120), st.integers(1, 7)
)
def test_copies_found_equal_a_plain_set_of_ids_per_hour(events: list[tuple[int, int]], every: int) -> None:
    """Against a plain Python set, with changelog flushes and restores at random points."""
    seen = SeenIds(10 * DAY_MS)
    log: list[tuple[bytes, bytes | None]] = []
    truth: set[tuple[int, int]] = set()
    for n, (ident, hour) in enumerate(events):
        date = T0 + hour * HOUR_MS
        expected = (ident, date // HOUR_MS) in truth
        truth.add((ident, date // HOUR_MS))
        assert seen.seen(action(ident, date=date)) == expected
        if n % every == 0:
            log.extend(seen.changes())
            seen = restored(log, 10 * DAY_MS)


def test_memory_is_nine_to_ten_bytes_per_flushed_id() -> None:
    seen = SeenIds(DAY_MS)
    for i in range(10_000):
        seen.seen(action(f"a{i}", date=T0 + i))
    seen.changes()
    assert 9 * 10_000 <= seen.nbytes() <= 10 * 10_000  # 8 in the array, 1-2 in the filter


def test_the_filter_clears_most_new_ids_and_never_hides_a_seen_one() -> None:
    seen = SeenIds(DAY_MS)
    for i in range(5_000):
        seen.seen(action(f"a{i}", date=T0))
        if i % 1000 == 999:
            seen.changes()  # several runs, the filter grown more than once
    seen.changes()
    hour = seen.hours[T0 // HOUR_MS]
    assert len(hour.runs) > 1
    assert all(seen.seen(action(f"a{i}", date=T0)) for i in range(5_000))
    bits = hour.mask + 1
    assert 8 * 5_000 <= bits <= 16 * 5_000
    others = [fingerprint("shop", "s-2", f"b{i}") for i in range(20_000)]
    passed = sum(hour.bits[(v & hour.mask) >> 3] >> (v & 7) & 1 for v in others)
    # One hash, 8-16 bits an id: 6-12 % of new ids get past it (a little more is sampling).
    assert passed / len(others) < 0.14


def test_a_task_restores_its_offset_and_skips_what_was_committed() -> None:
    task = PartitionTask(3, generation=1, window_ms=DAY_MS)
    task.take(OFFSET_KEY, b"120")
    assert task.next_offset == 120
    assert not task.fresh(119)
    assert task.fresh(120)
    assert task.skipped == 1


ids = st.one_of(st.none(), st.text(max_size=12), st.integers(-(2**70), 2**70), st.booleans(), st.floats())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ids, ids, ids), min_size=1, max_size=20))
def test_the_ids_remembered_are_the_fingerprints_of_action_id(triples: list[tuple[Any, Any, Any]]) -> None:
    """seen() writes the fingerprint out inline: it must stay the one fingerprint() computes."""
    seen = SeenIds(DAY_MS)
    expected = set()
    for app, session, ident in triples:
        event = action(ident, session=session, app=app)
        key = action_id(event)
        seen.seen(event)
        if key is not None:
            expected.add(fingerprint(*key))
    assert set(seen.hours.get(T0 // HOUR_MS, {}).new if seen.hours else ()) == expected


def test_lone_surrogates_and_missing_fields_have_fingerprints_too() -> None:
    seen = SeenIds(DAY_MS)
    odd = [action("\ud800", app="\udfff"), {"date": T0, "action": {"id": 7}}, action("a", session=None)]
    assert [seen.seen(e) for e in odd] == [False, False, False]
    assert seen.hours[T0 // HOUR_MS].new == {fingerprint(*action_id(e)) for e in odd}  # type: ignore[misc]
    assert [seen.seen(e) for e in odd] == [True, True, True]

"""Event-time windows: the busiest window containing an event, whatever the arrival order."""

from sekat.rules.windows import most_distinct


def test_counts_distinct_parties_not_events() -> None:
    assert most_distinct([(0, "a"), (1, "a"), (2, "b")], 2, 10) == 2


def test_window_edges_are_inclusive_and_exact() -> None:
    points = [(0, "a"), (10, "b"), (20, "c")]
    assert most_distinct(points, 20, 20) == 3  # [0, 20] holds all three
    assert most_distinct(points, 20, 19) == 2  # no 19-wide window holds 0 and 20


def test_an_early_event_arriving_last_sees_the_later_ones() -> None:
    seen = [(100, "b"), (105, "c")]  # a occurred first but is judged last
    assert most_distinct(seen, 90, 15, own=(90, "a")) == 3
    assert most_distinct(seen, 90, 14, own=(90, "a")) == 2


def test_the_window_must_contain_the_event() -> None:
    points = [(0, "a"), (1, "b"), (2, "c"), (100, "d")]
    assert most_distinct(points, 100, 10) == 1


def test_points_far_from_the_event_are_not_looked_at() -> None:
    history = [(t, f"p{t}") for t in range(0, 10_000, 10)]
    assert most_distinct(history, 5_000, 100) == 11
    assert most_distinct(history, 20_000, 100, own=(20_000, "x")) == 1

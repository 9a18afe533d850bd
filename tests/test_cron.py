"""Tick computation: monotone, consistent forwards and backwards, DST as cron users expect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsched.cron import CronError, TickRule, normalize_cron

BERLIN = ZoneInfo("Europe/Berlin")
EXPRS = [
    "30 2 * * *",
    "*/7 * * * *",
    "0 */3 * * 1-5",
    "15,45 1-3 * * *",
    "*/10 * * * * *",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "0 0 29 2 *",
]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2036, 12, 31), timezones=st.just(UTC)
)
rules = st.one_of(
    st.builds(TickRule, cron=st.sampled_from(EXPRS), timezone=st.sampled_from(ZONES)),
    st.builds(TickRule, every=st.integers(1, 10**6).map(lambda s: timedelta(seconds=s / 10))),
)


@settings(max_examples=150, deadline=None)
@given(rules, instants, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)))
def test_next_tick_is_after_and_monotone(rule: TickRule, t: datetime, gap: timedelta) -> None:
    a, b = rule.next_after(t), rule.next_after(t + gap)
    assert a > t
    assert a <= b
    assert rule.next_after(a) > a
    # No tick strictly between t and next_after(t): the previous tick is at or before t.
    assert rule.prev_at_or_before(a - timedelta(microseconds=1)) <= t


@settings(max_examples=60, deadline=None)
@given(rules.filter(lambda r: r.every is None or r.every >= timedelta(minutes=1)), instants)
def test_forward_and_backward_agree(rule: TickRule, t: datetime) -> None:
    forward = []
    it = rule.iter_from(t)
    for _ in range(6):
        forward.append(next(it))
    back = rule.latest(t, forward[-1], 100)
    assert back == forward


def _fires(rule: TickRule, start: datetime, end: datetime) -> list[datetime]:
    out, it = [], rule.iter_from(start)
    while (x := next(it)) < end:
        out.append(x)
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(2001, 2036), st.sampled_from([3, 10]))
def test_daily_0230_in_berlin_fires_once_a_day_across_dst(year: int, month: int) -> None:
    rule = TickRule(cron="30 2 * * *", timezone="Europe/Berlin")
    start = datetime(year, month, 20, tzinfo=BERLIN)
    end = datetime(year, month + 1, 5, tzinfo=BERLIN)
    fires = _fires(rule, start, end)
    days = (end.date() - start.date()).days
    assert len(fires) == days  # no lost run in spring, no double run in autumn
    assert len({f.astimezone(BERLIN).date() for f in fires}) == days
    for f in fires:
        local = f.astimezone(BERLIN)
        # 02:30 exists except on the spring-forward day, when the run moves to 03:00.
        assert (local.hour, local.minute) in ((2, 30), (3, 0))


def test_berlin_transitions_2024_exactly() -> None:
    rule = TickRule(cron="30 2 * * *", timezone="Europe/Berlin")
    march = _fires(rule, datetime(2024, 3, 30, tzinfo=BERLIN), datetime(2024, 4, 1, tzinfo=BERLIN))
    assert [f.astimezone(BERLIN).isoformat() for f in march] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",
    ]
    october = _fires(
        rule, datetime(2024, 10, 26, tzinfo=BERLIN), datetime(2024, 10, 29, tzinfo=BERLIN)
    )
    assert [f.astimezone(BERLIN).isoformat() for f in october] == [
        "2024-10-26T02:30:00+02:00",
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
    ]
    # A wildcard hour runs in both occurrences of the repeated hour: both are real hours.
    hourly = TickRule(cron="30 * * * *", timezone="Europe/Berlin")
    day = _fires(
        hourly, datetime(2024, 10, 27, tzinfo=BERLIN), datetime(2024, 10, 28, tzinfo=BERLIN)
    )
    assert len(day) == 25


def test_every_is_aligned_to_the_epoch() -> None:
    rule = TickRule(every=timedelta(seconds=15))
    t = rule.next_after(datetime(2024, 5, 1, 12, 0, 7, 123, tzinfo=UTC))
    assert t == datetime(2024, 5, 1, 12, 0, 15, tzinfo=UTC)
    assert rule.prev_at_or_before(t) == t


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cron": "* * *"}, "expected 5 fields"),
        ({"cron": "61 * * * *"}, "bad minute"),
        ({"cron": "@fortnightly"}, "expected 5 fields"),
        ({"cron": "* * * * *", "timezone": "Mars/Base"}, "unknown timezone 'Mars/Base'"),
        ({"every": timedelta(0)}, "must be positive"),
        ({}, "one of them"),
    ],
)
def test_invalid_rules(kw: dict, message: str) -> None:
    with pytest.raises(CronError, match=message):
        TickRule(**kw)


def test_aliases_and_seconds_field() -> None:
    assert normalize_cron("@daily") == "0 0 * * *"
    assert normalize_cron(" */5  * * * *  ") == "*/5 * * * *"
    rule = TickRule(cron="*/10 * * * * *")
    t = rule.next_after(datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert t == datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)

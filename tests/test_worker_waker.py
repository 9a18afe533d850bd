"""The waker rule (pgsched/worker/waker.py) driven through its inputs: what the worker hears,
what its claims find, what its lock tries answer, and the time (``now`` is passed in). The rule
across real workers (one insert, at most two claims) is tested in tests/test_worker.py."""

from __future__ import annotations

import pytest

from pgsched.worker.waker import CLAIM, HANDOFF, POLL, TRY_LOCK, Do, Role, Step, Waker

POLL_S = 5.0
QUEUES = ["default", "mail"]


def waker_holding_lock(now: float = 100.0, timer: float = 3.0) -> Waker:
    """A worker that took the role after an empty claim, its timer ``timer`` s away."""
    w = Waker(POLL_S)
    w.claiming()
    assert w.wants_lock_after_empty_claim()
    w.lock_tried(True, now, claim_now=False)
    w.set_timer(now + timer)
    return w


def candidate(now: float = 100.0) -> Waker:
    """An idle worker whose try of the lock after its empty claim failed, at ``now``."""
    w = Waker(POLL_S)
    w.claiming()
    w.lock_tried(False, now, claim_now=False)
    return w


def test_an_idle_worker_that_is_not_the_waker_waits_the_poll_interval_without_listening() -> None:
    w = candidate(now=100.0)
    assert w.role is Role.CANDIDATE
    assert w.next_step(100.0) == Step(Do.WAIT, POLL_S, listen=False)
    assert w.next_step(102.0) == Step(Do.WAIT, 3.0, listen=False)


def test_a_candidate_looks_for_tasks_left_behind_every_poll_interval() -> None:
    """The waker lock is an advisory lock any session can hold, and a waker can hang with it:
    every idle worker still polls (the claimer claims if a task was left behind)."""
    w = candidate(now=100.0)
    assert w.next_step(105.0) == POLL
    assert w.next_step(105.0) == Step(Do.WAIT, POLL_S, listen=False)  # the next poll
    assert w.next_step(110.0) == POLL
    w.claiming()  # it found one
    assert w.role is Role.OFF


def test_a_candidate_ignores_queue_notifications() -> None:
    w = candidate(now=0.0)
    assert w.heard("default", QUEUES, on_claim_connection=False) is False
    assert w.next_step(0.1).do is Do.WAIT


def test_a_handoff_makes_a_candidate_try_the_lock_and_the_winner_claims_at_once() -> None:
    w = candidate(now=0.0)
    assert w.heard(HANDOFF, QUEUES, on_claim_connection=False) is True  # wakes the claimer
    assert w.next_step(0.1) == TRY_LOCK
    w.lock_tried(True, 0.1, claim_now=True)
    assert w.role is Role.WAKER
    assert w.next_step(0.1) == CLAIM


def test_a_handoff_lost_to_another_worker_leaves_a_candidate() -> None:
    w = Waker(POLL_S)
    w.heard(HANDOFF, QUEUES, on_claim_connection=False)
    assert w.next_step(0.0) == TRY_LOCK
    w.lock_tried(False, 0.0, claim_now=True)
    assert w.role is Role.CANDIDATE
    assert w.next_step(0.1) == Step(Do.WAIT, 4.9)  # the handoff is used up
    assert w.heartbeat_asks(paused=False)


def test_the_waker_waits_for_its_timer_listening_and_claims_when_it_runs_out() -> None:
    w = waker_holding_lock(now=100.0, timer=3.0)
    step = w.next_step(101.0)
    assert step.do is Do.WAIT and step.listen and step.timeout == pytest.approx(2.0)
    assert w.next_step(103.0) == CLAIM


def test_the_waker_claims_at_once_on_a_notification_for_its_queues_only() -> None:
    w = waker_holding_lock()
    assert w.heard("other", QUEUES, on_claim_connection=True) is False
    assert w.next_step(100.5).do is Do.WAIT
    assert w.heard("mail", QUEUES, on_claim_connection=True) is True
    assert w.next_step(100.5) == CLAIM
    w.claiming()  # the claim answers the notification
    assert not w.notified


def test_a_new_waker_after_an_empty_claim_waits_for_its_timer() -> None:
    """Taking the role after an empty claim is no reason to claim again at once (an extra,
    empty, claim); taking it on a handoff is (the insert that handed it on may wait)."""
    w = waker_holding_lock(now=100.0, timer=3.0)
    assert w.next_step(100.0).do is Do.WAIT
    assert not w.wants_lock_after_empty_claim()  # held: no statement to try it again


def test_a_full_batch_hands_the_role_on_and_a_short_one_keeps_it() -> None:
    w = waker_holding_lock()
    w.claiming()
    assert w.claimed(3, 10) is False  # busy, but still the waker
    assert w.role is Role.WAKER
    w.claiming()
    assert w.claimed(10, 10) is True  # let the lock go and send the handoff
    assert w.role is Role.OFF
    assert w.heard(HANDOFF, QUEUES, on_claim_connection=False)  # its own handoff comes back
    assert w.next_step(200.0) == TRY_LOCK  # once idle again it competes like the others


def test_a_full_batch_of_a_worker_that_is_not_the_waker_hands_nothing_on() -> None:
    w = candidate()
    w.claiming()
    assert w.role is Role.OFF
    assert w.claimed(10, 10) is False


def test_the_heartbeat_asks_for_the_lock_for_an_idle_candidate_only() -> None:
    assert not Waker(POLL_S).heartbeat_asks(paused=False)  # busy (OFF)
    w = candidate()
    assert w.heartbeat_asks(paused=False)
    assert not w.heartbeat_asks(paused=True)
    assert w.heartbeat_took() is True  # wake the claimer: the role was vacant
    assert w.role is Role.WAKER and not w.heartbeat_asks(paused=False)
    assert w.next_step(0.1) == CLAIM


def test_pausing_lets_the_lock_go_without_a_handoff() -> None:
    w = waker_holding_lock()
    assert w.paused() is True
    assert w.role is Role.OFF
    assert w.paused() is False  # nothing held any more


def test_a_lost_direct_connection_takes_the_role_with_it() -> None:
    w = waker_holding_lock()
    w.lock_lost()
    assert w.role is Role.OFF
    assert w.next_step(100.0).do in (Do.WAIT, Do.POLL)
    assert w.role is Role.CANDIDATE


def test_a_waker_that_starts_listening_claims_once_more_before_it_waits() -> None:
    """A notification committed before the claim connection's LISTEN comes on the direct
    connection only, where a copy read after the LISTEN is dropped: one claim covers it."""
    w = waker_holding_lock(now=100.0, timer=3.0)
    assert w.next_step(100.0).listen
    w.listen_changing(True)
    w.listen_done(True)
    assert w.heard("default", QUEUES, on_claim_connection=False) is False  # read late
    assert w.next_step(100.0) == CLAIM
    w.claiming()
    assert w.next_step(100.0).do is Do.WAIT


def test_while_the_claim_connection_listens_only_its_copy_of_a_notification_counts() -> None:
    """A notification comes to a listening waker on both its connections. The direct copy,
    read by the control thread at any time, must not mark the worker notified again after the
    claim that the first copy caused (an extra empty claim per insert)."""
    w = waker_holding_lock()
    w.listen_changing(True)
    assert not w.listening  # not until LISTEN is done: the direct copy still counts
    w.listen_done(True)
    w.claiming()  # the claim made once it listens
    assert w.heard("default", QUEUES, on_claim_connection=False) is False
    assert not w.notified
    assert w.heard(HANDOFF, QUEUES, on_claim_connection=False) is True  # never dropped
    assert w.heard("default", QUEUES, on_claim_connection=True) is True
    assert w.notified


def test_while_the_claim_connection_does_not_listen_the_direct_copy_counts() -> None:
    w = waker_holding_lock()
    w.listen_done(True)
    w.listen_changing(False)  # UNLISTEN about to be sent: from now on the direct copy counts
    assert w.heard("default", QUEUES, on_claim_connection=False) is True
    w.claiming()
    w.listen_done(True)
    w.claim_connection_lost()
    assert w.heard("default", QUEUES, on_claim_connection=False) is True

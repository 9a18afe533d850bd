"""The waker rule: one insert makes at most two workers claim.

Every idle worker that is told of an insert and claims costs a statement on the server, so a
fleet of idle workers must not all answer one notification. Among the idle workers with the
same signature (queues and task types), one holds a session-level advisory lock, the *waker
lock*; only that worker claims on a queue notification, the others ignore it. A worker whose
last claim found something is busy: it claims whenever it has free slots, whatever its role.
When the waker claims a full batch it is busy too; it lets the lock go and sends the handoff
notification ``!waker``, on which every idle worker tries the lock at once and the first to
get it claims: the insert that filled the batch wakes that one more worker, no more. A waker
that dies loses the lock with its session; the idle workers that are not the waker ask for the
lock with each heartbeat, so a vacant role is taken at the next idle heartbeat of any of them.

This module holds the rule as one state machine and nothing else: no connection, no thread.
Its inputs are what the worker hears (a queue notification, a handoff, a heartbeat's answer, a
lost connection) and what its claims find; its outputs are the step the claim thread takes
next and whether it lets the lock go. The claim thread, the control thread and the claim
connection's notification handler all feed it, so every transition runs under one lock (a
few per claimed batch: nothing per task).

The states of the role:

    OFF        busy, paused or a burst worker: takes no part in the role
    CANDIDATE  idle, not the waker: ignores queue notifications, and its heartbeat tries the
               lock; every ``poll_interval`` it looks for a task left behind (due for half an
               interval) and claims if there is one. The waker lock is an advisory lock that
               any session can hold, and a waker can hang holding it: the poll keeps the
               queue moving then, at one indexed lookup per idle worker and interval.
    WAKER      holds the lock: claims on a notification for its queues, or when its timer
               (the next due task, at most ``poll_interval`` away) runs out

and two events that wait to be acted on: ``handoff`` (``!waker`` heard: try the lock at once)
and ``notified`` (a notification for one of its queues since its last claim).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass


class Role(enum.Enum):
    OFF = "off"
    CANDIDATE = "candidate"
    WAKER = "waker"


class Do(enum.Enum):
    """What the claim thread of an idle worker does next."""

    CLAIM = "claim"  # claim now
    TRY_LOCK = "try_lock"  # try the waker lock now, then report it with lock_tried()
    POLL = "poll"  # claim if a task was left behind (due for poll_interval / 2)
    WAIT = "wait"  # wait up to Step.timeout (for a notification too, when Step.listen)


@dataclass(frozen=True, slots=True)
class Step:
    do: Do
    timeout: float = 0.0
    listen: bool = False  # the waker listens on its claim connection while it waits


CLAIM = Step(Do.CLAIM)
TRY_LOCK = Step(Do.TRY_LOCK)
POLL = Step(Do.POLL)

HANDOFF = "!waker"  # the payload of the handoff notification on the ``pgsched`` channel


class Waker:
    """The waker role of one worker. ``poll_interval`` bounds every wait of an idle worker."""

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._role = Role.OFF
        self._handoff = False
        self._notified = False
        self._listening = False
        self._claim_at = 0.0  # the waker's timer, or a candidate's next poll (monotonic s)

    # -- what the rest of the worker reads ------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @property
    def notified(self) -> bool:
        """A notification for this worker's queues came since its last claim."""
        return self._notified

    @property
    def listening(self) -> bool:
        """The claim connection surely listens (LISTEN done, UNLISTEN not yet sent)."""
        return self._listening

    # -- the claim thread: an idle worker's next step ----------------------------------------------

    def next_step(self, now: float) -> Step:
        """The next step of an idle worker's claim thread (not a burst worker's: it takes no
        part in the role). A handoff wakes the claim thread, so a CANDIDATE tries the lock as
        soon as it hears one."""
        with self._lock:
            if self._role is Role.WAKER:
                if self._notified or now >= self._claim_at:
                    return CLAIM
                return Step(Do.WAIT, self._claim_at - now, listen=True)
            if self._handoff:
                self._handoff = False
                return TRY_LOCK
            self._role = Role.CANDIDATE
            if now < self._claim_at:
                return Step(Do.WAIT, self._claim_at - now)
            self._claim_at = now + self.poll_interval
            return POLL

    def lock_tried(self, got: bool, now: float, *, claim_now: bool) -> None:
        """The answer to a try of the lock: TRY_LOCK's (``claim_now``: a worker that takes
        the role on a handoff claims at once, for the insert that handed it on may wait), or
        the try after an empty claim (the new waker then waits for its timer). A worker that
        did not get it polls ``poll_interval`` from ``now``."""
        with self._lock:
            if got:
                self._notified = self._notified or claim_now
                self._role = Role.WAKER
            else:
                self._role = Role.CANDIDATE
                self._claim_at = now + self.poll_interval

    def claiming(self) -> None:
        """A claim is about to run: what it finds answers every notification heard so far."""
        with self._lock:
            self._notified = False
            if self._role is Role.CANDIDATE:
                self._role = Role.OFF

    def claimed(self, got: int, asked: int) -> bool:
        """What a claim found. True: let the lock go and send the handoff (a waker that filled
        its batch is busy now, and more tasks may wait for an idle worker). A batch that is
        short but not empty keeps the worker busy and the role where it is."""
        with self._lock:
            if got < asked or self._role is not Role.WAKER:
                return False
            self._role = Role.OFF
            return True

    def wants_lock_after_empty_claim(self) -> bool:
        """After an empty claim the worker is idle: it must hold the lock to claim on the
        next notification (already held: no statement)."""
        return self._role is not Role.WAKER

    def set_timer(self, claim_at: float) -> None:
        """The waker's next claim without a notification: the next due task, at most
        ``poll_interval`` away (the fallback poll that covers a lost notification)."""
        with self._lock:
            self._claim_at = claim_at

    def paused(self) -> bool:
        """The worker is paused. True: let the lock go, without a handoff (a paused worker
        claims nothing, so the role must move to an active one at its next heartbeat)."""
        with self._lock:
            held, self._role = self._role is Role.WAKER, Role.OFF
            return held

    # -- the claim connection -------------------------------------------------------------------

    def listen_changing(self, on: bool) -> None:
        """Before LISTEN or UNLISTEN on the claim connection is sent. Off at once, on only
        once it is done (listen_done): a notification in between comes on the direct
        connection, and must count there."""
        if not on:
            self._listening = False

    def listen_done(self, on: bool) -> None:
        """LISTEN (or UNLISTEN) is done. A worker that starts listening claims once more before
        it waits: a notification committed before its LISTEN reached the direct connection
        only, and that copy, read once the claim connection listens, is dropped (heard())."""
        with self._lock:
            self._listening = on
            if on:
                self._notified = True

    def claim_connection_lost(self) -> None:
        self._listening = False

    # -- notifications --------------------------------------------------------------------------

    def heard(self, payload: str, queues: list[str], *, on_claim_connection: bool) -> bool:
        """A notification on the ``pgsched`` channel. Returns whether to wake the claim thread.

        While the claim connection listens, a queue notification comes on both connections;
        the direct copy, read whenever the control thread gets to it, could land after the
        claim that the first copy caused and ask for one more, empty, claim. So the claim
        connection's copy is the one that counts then."""
        if payload == HANDOFF:
            self._handoff = True
            return True
        if payload not in queues or (self._listening and not on_claim_connection):
            return False
        with self._lock:
            self._notified = True
            return self._role is Role.WAKER

    # -- the control thread ---------------------------------------------------------------------

    def heartbeat_asks(self, paused: bool) -> bool:
        """Whether the next heartbeat tries the lock: a CANDIDATE's does, unless paused."""
        return self._role is Role.CANDIDATE and not paused

    def heartbeat_took(self) -> bool:
        """The heartbeat's try got the lock (the role was vacant). True: wake the claim thread,
        which claims at once, as a new waker does."""
        with self._lock:
            self._role = Role.WAKER
            self._notified = True
            return True

    def lock_lost(self) -> None:
        """The direct connection, and with it the lock, is gone (or a new session registered)."""
        with self._lock:
            if self._role is Role.WAKER:
                self._role = Role.OFF

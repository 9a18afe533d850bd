"""The parent of a shell task's command: runs it, and when it exits, kills what it left behind.

Run as a script by pgsched.builtins.ShellRunner (``python shell_reaper.py -- ARGV...`` or
``python shell_reaper.py --shell COMMAND``), never imported by the worker. It makes itself a
child subreaper, so every descendant of the command whose parent exits (``cmd &``, a daemon
that double-forks, one that called setsid) is re-parented to it rather than to init; once the
command exits it kills those round after round until none is left, then exits as the command
did (the same code, or the same signal). A task's processes therefore end with its attempt.
It imports nothing of pgsched, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

import psutil

PR_SET_CHILD_SUBREAPER = 36


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def kill_descendants(top: psutil.Process, *, reap: bool = False) -> None:
    """Kill every descendant of ``top``, round after round: a kill orphans grandchildren,
    which come back to the subreaper, a child of ``top``'s tree again. ``reap``: ``top`` is
    this process, which waits for its dead children as it goes."""
    for _ in range(100):
        if reap:
            _reap()
        try:
            live = [c for c in top.children(recursive=True) if _alive(c)]
        except psutil.Error:
            return
        if not live:
            break
        for c in live:
            with contextlib.suppress(psutil.Error):
                c.kill()
        psutil.wait_procs(live, timeout=0.5)
    if reap:
        _reap()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def main(args: list[str]) -> int:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    if args[:1] == ["--shell"] and len(args) == 2:
        argv = ["/bin/sh", "-c", args[1]]
    elif args[:1] == ["--"] and len(args) > 1:
        argv = args[1:]
    else:
        print("usage: shell_reaper.py --shell COMMAND | -- ARGV...", file=sys.stderr)
        return 2
    try:
        proc = subprocess.Popen(argv)
    except OSError as e:
        print(f"cannot start command: {e}", file=sys.stderr)
        return 127
    rc = proc.wait()
    kill_descendants(psutil.Process(), reap=True)
    if rc < 0:  # died of a signal: die of the same one, so the worker sees what the command did
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler
            signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

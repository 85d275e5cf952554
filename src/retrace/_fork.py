"""os.fork() at the boundary: a forked child records a trace of its own.

Recording: the parent records the child's pid as the result of fork.  The
child closes its copy of the parent's trace and starts TRACE.PID, whose header
names the parent trace and the fork's place in it (`fork_index`, the number of
events the parent had recorded).  The child then re-seeds the random module
as its first event: Python re-seeds it in every child, from the OS.

The handlers registered with os.register_at_fork run inside the external
call, with the boundary off: what they do (logging takes its lock around the
fork, threading resets its state in the child) is not recorded, and replay,
which forks nothing, does not run them.

Replay of the parent: fork returns the recorded pid; no process is created.
Replay of a child (`retrace replay TRACE --pid PID`): the parent's trace
replays up to that fork, where fork returns 0 and replay continues from the
child's trace, in the same process.
"""
import os
import random

from . import _engine

# Replay: the pid of the recorded child to follow at its fork, or None.
follow_pid = None


def child_trace_path(trace, pid):
    return f"{trace}.{pid}"


def install(replaced):
    real_fork = os.fork
    event = _engine.Boundary("posix.fork", lambda pid: pid)

    def fork():
        if not _engine.active():
            return real_fork()
        if _engine.mode() == "replay":
            pid = event(None)
            if pid != follow_pid:
                return pid
            _continue_child_replay(pid)
        else:
            index = _engine.event_index()
            # The handlers of os.register_at_fork (logging's lock, ...) run
            # inside the call, unrecorded: replay forks nothing and runs none.
            _engine.suspend()
            try:
                pid = real_fork()
            finally:
                _engine.resume()
            if pid:
                return event(pid)
            _continue_child_recording(index)
        random.seed()
        return 0

    replaced[id(real_fork)] = (real_fork, fork)
    os.fork = fork


def _continue_child_recording(fork_index):
    from . import _session
    parent_trace, parent_pid = _session.trace_path, _session.header["pid"]
    _engine.stop()
    _session.start_recording(child_trace_path(parent_trace, os.getpid()),
                             _session.header["target"], _session.header["hash_seed"],
                             parent={"trace": parent_trace, "pid": parent_pid,
                                     "fork_index": fork_index},
                             install=False)


def _continue_child_replay(pid):
    from . import _session
    _session.switch_replay(child_trace_path(_session.trace_path, pid))

#!/usr/bin/env python3
"""prio.py NICE CMD [ARG...]: run CMD (exec, same pid) at scheduling priority NICE.

With NICE 0 it only execs. Otherwise it first starts a new session, which gives the process
(and everything it starts) its own scheduler autogroup, sets that autogroup's nice
(/proc/self/autogroup), and sets the process's own nice too (for kernels without autogroup).
With autogroup on (Debian's default) a plain `nice`/`renice` only ranks processes inside one
session, so it would not lift the measured processes above other sessions' builds.
Never forks: the pid the caller got from `&` is the pid of CMD.
"""
import os
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    nice = int(sys.argv[1])
    cmd = sys.argv[2:]
    if nice:
        try:
            os.setsid()
        except OSError:
            pass  # already a group leader: keep the session we have
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(nice))
        except OSError:
            pass
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError:
            pass
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()

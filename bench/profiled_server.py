"""`rowgate` under cProfile switched on and off by signals, for profiling a running server
without touching server code:

    python -m bench.profiled_server OUT.prof serve --transport http --port 8080

SIGUSR1 starts profiling (the main thread, where the event loop runs), SIGUSR2 stops it and
writes the stats to OUT.prof (pstats format); everything else is `rowgate` itself.

The profiler's clock is the thread's CPU time, not the wall clock: on a shared machine a
syscall that wakes another process (a socket send to Postgres or to the client) can lose
the CPU for milliseconds, which a wall-clock profile would book to that syscall. Time spent
waiting (epoll) therefore shows up as almost nothing.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from types import FrameType

from server.cli import main as rowgate_main


def main(argv: list[str]) -> int:
    out, rest = argv[0], argv[1:]
    profiler = cProfile.Profile(time.thread_time)

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return rowgate_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make test`: the whole suite in two lanes at once, on a 2-core machine in about half the time of
one after the other.

- The tests marked `serial` (timing under load, shutdown races) run in one pytest process at
  normal priority; they spend most of their time waiting for outages and grace periods to pass.
- The rest run on pytest-xdist processes at a lower CPU priority (`nice`), so they soak up the
  idle CPU without ever making a serial test's latency figure the neighbours' fault.

The xdist lane prints to the terminal as it goes; the serial lane's report is kept in
tests/.artifacts/serial-tests.log and printed after. The exit status is the first non-zero one.
Ctrl-C reaches both pytest processes (they are in the terminal's process group) and both stop.

    python -m tests.run_suite --workers 2 [pytest arguments for both lanes...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERIAL_LOG = ROOT / "tests" / ".artifacts" / "serial-tests.log"
XDIST_NICENESS = 10  # a weight of 110 to the serial lane's 1024 when both want a core


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.run_suite", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist processes (0: one)")
    options, pytest_args = parser.parse_known_args(argv)
    pytest = [sys.executable, "-m", "pytest", *pytest_args]

    SERIAL_LOG.parent.mkdir(parents=True, exist_ok=True)
    with SERIAL_LOG.open("wb") as log:
        # No cache plugin here: the two lanes would both write .pytest_cache/.
        serial = subprocess.Popen(
            [*pytest, "-m", "serial", "-p", "no:cacheprovider"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        xdist = subprocess.Popen(
            [*pytest, "-n", str(options.workers), "-m", "not serial"],
            cwd=ROOT,
            preexec_fn=lambda: os.nice(XDIST_NICENESS),
        )
        statuses = [_wait(xdist), _wait(serial)]

    print("\n== the tests marked serial, run beside the rest ==", flush=True)
    sys.stdout.buffer.write(SERIAL_LOG.read_bytes())
    sys.stdout.flush()
    return next((status for status in statuses if status != 0), 0)


def _wait(process: subprocess.Popen[bytes]) -> int:
    """The process's exit status as a shell gives it (128 + N when signal N ended it); a Ctrl-C
    here (it reached the lanes too) goes on waiting for them to stop."""
    while True:
        try:
            status = process.wait()
        except KeyboardInterrupt:
            continue
        return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

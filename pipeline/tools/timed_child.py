"""Run one command and print its wall seconds, peak resident memory and exit status as JSON (for
`maskfold bench --stages`).

A process of its own, started with nothing imported, because Linux carries a process's peak memory across fork and
exec: a stage forked straight from the bench (which has loaded torch and pandas) would report the bench's peak.
Forked from this small process, the command's wait4 figure is its own.

    python -m pipeline.tools.timed_child TIMEOUT LOG_FILE COMMAND...
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def timed(argv: list[str], log_file: str, timeout: float) -> dict:
    """Wall seconds, peak resident MiB, exit status and whether it was stopped at `timeout` seconds (0: never)."""
    with open(log_file, "w") as f:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
                break
            if timeout and not timed_out and time.perf_counter() - start > timeout:
                child.kill()
                timed_out = True
            time.sleep(0.02)
    return {"seconds": round(time.perf_counter() - start, 2), "peak_mib": round(usage.ru_maxrss / 1024, 1),
            "exit": child.returncode, "timed_out": timed_out}


if __name__ == "__main__":
    print(json.dumps(timed(sys.argv[3:], sys.argv[2], float(sys.argv[1]))))

"""Progress reports: separate lines in a log file, none for short work."""

import subprocess
import sys

CODE = """
import time
from zernike3d import progress
progress.DELAY_S = {delay}
for _ in progress.progress(list(range(20)), "work", "item"):
    time.sleep(0.01)
"""


def test_a_log_gets_one_line_per_tenth_without_carriage_returns():
    run = subprocess.run([sys.executable, "-c", CODE.format(delay=0.0)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr
    lines = run.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"work: {2 * i}/20 item" for i in range(1, 11)]


def test_short_work_reports_nothing():
    run = subprocess.run([sys.executable, "-c", CODE.format(delay=60.0)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == ""

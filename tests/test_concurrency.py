"""Runs that share a cache compute a missing entry once (parallel chapters, sweep --jobs).

Each test makes the race certain instead of hoping for it: the first process is frozen
(``SIGSTOP``) while it holds the entry's lock, or the test holds the lock itself, and
the second process is started only then; ``/proc/locks`` shows when a process waits.
Before the locks, the second process computed (or, for the simulated data, deleted and
rewrote) the entry itself while the first was still writing it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fusi_nmf import _atomic
from fusi_nmf.simulate import simulated_dataset
from fusi_nmf.simulate.cache import _verify

pytestmark = pytest.mark.skipif(
    not Path("/proc/locks").is_file(), reason="needs Linux /proc/locks to see lock waiters"
)


def _locks(path: Path) -> list[tuple[int, bool]]:
    """(pid, waiting) for every flock on ``path`` (waiting: blocked, not holding)."""
    inode = path.stat().st_ino
    found = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        waiting = "->" in fields
        if waiting:
            fields.remove("->")
        # id: FLOCK ADVISORY WRITE pid maj:min:inode start end
        if len(fields) >= 6 and fields[5].rsplit(":", 1)[-1] == str(inode):
            found.append((int(fields[4]), waiting))
    return found


def _wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def _python(code: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FUSI_NMF_DATA": str(tmp_path / "data"), "FUSI_NMF_PROGRESS": "1",
            "OMP_NUM_THREADS": "1"}


def test_simulated_dataset_is_generated_once_by_concurrent_runs(tmp_path, env):
    data = tmp_path / "data"
    lock_path = data / "simulated" / ".locks" / "small-seed3.lock"
    code = ("from fusi_nmf.simulate import simulated_dataset;"
            "print(simulated_dataset('small', 3))")
    with _atomic.FileLock(lock_path):  # as if a first run were generating it
        procs = [_python(code, env) for _ in range(2)]
        _wait_for(lambda: sum(w for _, w in _locks(lock_path)) == 2, "both runs to wait")
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    roots = {out.strip() for out, _ in outputs}
    assert len(roots) == 1
    generated = sum(err.count("generating simulated dataset") for _, err in outputs)
    assert generated == 1, outputs
    assert _verify(Path(roots.pop()), "small", 3) is None  # complete and intact


def test_a_stage_another_run_is_computing_is_waited_for_and_read(tmp_path, env):
    simulated_dataset("small", 0, data_dir=tmp_path / "data", progress=False)
    work = tmp_path / "work"
    code = (
        "import json; from fusi_nmf.pipeline import Workspace;"
        f"ws = Workspace({str(work)!r}, preset='small');"
        "fd = ws.motion()['framewise_displacement'].values.tolist();"
        "print(json.dumps({'hits': ws.cache_hits, 'fd': fd}))"
    )
    first = _python(code, env)
    locks = work / ".locks"

    def registration_held():
        for path in locks.glob("registration-*.lock") if locks.is_dir() else []:
            if (first.pid, False) in _locks(path):
                return path
        return None

    path = _wait_for(registration_held, "the first run to start the registration")
    os.kill(first.pid, signal.SIGSTOP)  # frozen while computing: it holds the lock
    try:
        second = _python(code, env)
        _wait_for(lambda: (second.pid, True) in _locks(path), "the second run to wait")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    (out1, err1), (out2, err2) = (p.communicate(timeout=120) for p in (first, second))
    assert (first.returncode, second.returncode) == (0, 0), (err1, err2)
    one, two = json.loads(out1), json.loads(out2)
    assert "[fusi-nmf] registration ..." in err1
    assert "[fusi-nmf] registration ..." not in err2  # it read the first run's result
    assert "registration" in two["hits"] and "registration" not in one["hits"]
    assert one["fd"] == two["fd"]

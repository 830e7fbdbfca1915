"""`python3 -m longattn_peers serve` ends when the process that started it is gone, even while its
stdin stays open (a peer left running would hold the GPU after longattn was killed)."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The parent: starts `serve` with the given stdin and prints its pid, then waits to be killed.
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "longattn_peers", "serve"], stdin=int(sys.argv[1]),
                         pass_fds=(int(sys.argv[1]),), env=dict(os.environ, PYTHONPATH=sys.argv[2]))
print(child.pid, flush=True)
time.sleep(600)
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for init to reap it counts as gone.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_serve_exits_when_its_parent_is_killed():
    read_end, write_end = os.pipe()  # this test holds the write end: no EOF reaches serve
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(read_end), os.path.join(ROOT)],
                              stdout=subprocess.PIPE, pass_fds=(read_end,), text=True)
    try:
        child = int(parent.stdout.readline())
        time.sleep(1.0)
        assert alive(child), "serve ended before its parent did"
        parent.kill()
        parent.wait()
        deadline = time.time() + 10
        while alive(child) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(child), "serve outlived the process that started it"
    finally:
        os.close(read_end)
        os.close(write_end)
        parent.kill()

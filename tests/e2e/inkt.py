"""Helpers for end-to-end tests: the real inkflow binary, real sockets on
127.0.0.1 or ipc://, free ports, and processes that are always cleaned up."""
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

INKFLOW = os.environ.get("INKFLOW") or (sys.argv[1] if len(sys.argv) > 1 else "build/inkflow")
BUILD = os.path.dirname(os.path.abspath(INKFLOW))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_procs = []
failures = 0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoint():
    return "tcp://127.0.0.1:%d" % free_port()


def tmpdir():
    d = tempfile.mkdtemp(prefix="inkflow-e2e-")
    return d


def start(args, **kw):
    """Start a process in its own process group; killed at exit."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen(args, start_new_session=True, **kw)
    _procs.append(p)
    return p


def run(args, timeout=120, **kw):
    kw.setdefault("capture_output", True)
    return subprocess.run(args, timeout=timeout, **kw)


def query(ep, obj):
    """`inkflow query ep obj` (a request to a router source): (exit code, reply dict,
    {} when the last line is not JSON)."""
    q = run([INKFLOW, "query", ep, json.dumps(obj)], timeout=30)
    try:
        reply = json.loads(q.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        reply = {}
    return q.returncode, reply


@atexit.register
def _cleanup():
    for p in _procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def write_config(d, text, name="graph.yaml"):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_for(pred, timeout=30, step=0.05):
    t = time.time() + timeout
    while time.time() < t:
        if pred():
            return True
        time.sleep(step)
    return False


def listening(ep):
    """Whether a TCP endpoint (tcp://127.0.0.1:PORT) has a listening socket,
    read from /proc/net/tcp without connecting to it (a probe connection
    would count as a peer)."""
    port = int(ep.rsplit(":", 1)[1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            pass
    return False


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def check(cond, msg):
    global failures
    if cond:
        print("ok   " + msg)
    else:
        failures += 1
        print("FAIL " + msg)
    sys.stdout.flush()


def finish():
    _cleanup()
    print("%d failed" % failures)
    sys.exit(1 if failures else 0)


def summary_row(stderr_text, node):
    """Parse the per-node summary printed at exit: {in, out, rejected, dropped, why}."""
    for line in stderr_text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == node and parts[1] in ("source", "operator", "sink"):
            why = {}
            for kv in parts[6:]:
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    why[k] = int(v)
            return {"in": int(parts[2]), "out": int(parts[3]), "rejected": int(parts[4]),
                    "dropped": int(parts[5]), "why": why}
    return None

"""`inkflow top` under a pseudo-terminal (Python's pty module): against a
running graph fed at a steady rate over zmq, the live view shows each node
with a non-zero records-per-second rate read from /metrics; q quits with
exit 0 and the terminal restored; ^C typed on the terminal quits too; an
unreachable endpoint is shown and retried, not a crash; --once prints one
plain frame."""
import os
import pty
import re
import select
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402

d = inkt.tmpdir()
port = inkt.free_port()
e_in = inkt.endpoint()
cfg = inkt.write_config(d, """
engine:
  http: {listen: "127.0.0.1:%d"}
sources:
  feed: {type: zmq, socket: pull, bind: "%s"}
operators:
  cdf: {type: ecdf, inputs: [feed], mode: kll, key_by: key, max_keys: 8}
sinks:
  out: {type: file, path: out.jsonl, inputs: [cdf]}
""" % (port, e_in))
graph = inkt.start([inkt.INKFLOW, "run", cfg])

stop = threading.Event()


def feeder():
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.connect(e_in)
    i = 0
    while not stop.is_set():
        for _ in range(50):
            s.send(msgpack.packb({"x": [i % 101], "key": "k%d" % (i % 3)}))
            i += 1
        time.sleep(0.01)
    s.close(0)
    ctx.term()


th = threading.Thread(target=feeder, daemon=True)
th.start()
children = []


def spawn(args):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(inkt.INKFLOW, [inkt.INKFLOW] + args)
    children.append(pid)
    return pid, fd


def read_until(fd, pred, timeout):
    buf = b""
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if pred(buf):
                return True, buf
    return False, buf


def wait_exit(pid, timeout):
    end = time.time() + timeout
    while time.time() < end:
        p, status = os.waitpid(pid, os.WNOHANG)
        if p == pid:
            children.remove(pid)
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


def last_frame(buf):
    text = buf.decode(errors="replace")
    return text.split("\x1b[2J")[-1]


def rate_of(frame, node):
    for line in frame.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0] == node:
            try:
                return float(f[2].rstrip("kM")) * (1e3 if f[2].endswith("k") else 1e6 if f[2].endswith("M") else 1)
            except ValueError:
                return None
    return None


ep = "127.0.0.1:%d" % port
pid, fd = spawn(["top", ep, "--interval", "0.3"])
ok, buf = read_until(fd, lambda b: all((rate_of(last_frame(b), n) or 0) > 0 for n in ("feed", "cdf", "out")),
                     40)
frame = last_frame(buf)
inkt.check(ok, "top shows feed, cdf and out with non-zero IN/s under a pty:\n%s" % frame)
inkt.check("\x1b[?1049h" in buf.decode(errors="replace"), "top switched to the alternate screen")
m = re.search(r"^\s*cdf\s+operator\s+\S+\s+\S+\s+\S+\s+\d+\s+\d+\s+(\d+)", frame, re.M)
inkt.check(m is not None and m.group(1) == "3", "the keyed operator's row shows its 3 keys")
os.write(fd, b"q")
ok2, rest = read_until(fd, lambda b: b"\x1b[?1049l" in b, 10)
rc = wait_exit(pid, 10)
inkt.check(rc == 0 and ok2, "q quits with exit 0 and leaves the alternate screen (rc=%s)" % rc)
os.close(fd)

pid, fd = spawn(["top", ep, "--interval", "0.3"])
ok, buf = read_until(fd, lambda b: b"NODE" in b, 20)
os.write(fd, b"\x03")  # ^C, turned into SIGINT by the terminal
read_until(fd, lambda b: b"\x1b[?1049l" in b, 10)
rc = wait_exit(pid, 10)
inkt.check(ok and rc == 0, "^C on the terminal quits with exit 0 (rc=%s)" % rc)
os.close(fd)

# an endpoint with nothing behind it: shown, retried, q still quits
pid, fd = spawn(["top", "127.0.0.1:%d" % inkt.free_port(), "--interval", "0.2"])
ok, buf = read_until(fd, lambda b: b"retrying" in b, 20)
os.write(fd, b"q")
read_until(fd, lambda b: b"\x1b[?1049l" in b, 10)
rc = wait_exit(pid, 10)
inkt.check(ok and rc == 0, "an unreachable endpoint is shown and retried; q quits (rc=%s)" % rc)
os.close(fd)

p = inkt.run([inkt.INKFLOW, "top", ep, "--once", "--interval", "0.3"], timeout=30)
out = p.stdout.decode()
inkt.check(p.returncode == 0 and "\x1b" not in out and (rate_of(out, "feed") or 0) > 0,
           "--once: one plain frame with the rates:\n%s" % out)
p = inkt.run([inkt.INKFLOW, "top", ep, "--interval", "abc"], timeout=30)
inkt.check(p.returncode == 2, "--interval abc refused with exit 2")

stop.set()
th.join(timeout=10)
for c in list(children):
    try:
        os.kill(c, signal.SIGKILL)
        os.waitpid(c, 0)
    except OSError:
        pass
graph.send_signal(signal.SIGTERM)
graph.wait(timeout=30)
inkt.finish()

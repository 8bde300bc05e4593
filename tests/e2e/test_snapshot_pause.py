"""The data path's pause per snapshot, as the engine measures it (docs/state.md,
"Off the data path"), and the output's durability moved to the writer child.

- Four periodic snapshots (engine.snapshot.every_records) of a keyed graph fed
  over zmq: /metrics counts each one's main-loop pause in
  inkflow_snapshot_pause_seconds (a histogram whose +Inf bucket and count are
  4, buckets non-decreasing), with last <= max <= sum; the final snapshot (on
  SIGTERM, after the stream) is not counted.
- INKFLOW_SNAPSHOT_TRACE gets one line per periodic snapshot: its window
  (start, end) on the monotonic clock, in order and disjoint, each pause no
  longer than its window and its collection part no longer than the pause,
  all written.
- The writer child fdatasyncs the file sink through a descriptor of its own:
  inkflow holds two descriptors of the output, and only one of them the
  lock (/proc/PID/fdinfo), so a writer outliving a killed inkflow holds no
  lock a restore needs.
- After SIGTERM: exit 0, five snapshots (the final one too), the output
  holds every record sent.
- Under strace (skipped with a message where it cannot run), a file-to-file
  graph: each writer child fdatasyncs the output before its rename, and the
  main thread fdatasyncs only for the final snapshot it writes itself."""
import os
import shutil
import signal
import sys

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
from inkprom import scrape, value  # noqa: E402

N, EVERY = 4000, 1000
d = inkt.tmpdir()
port = inkt.free_port()
e_in = inkt.endpoint()
cfg = inkt.write_config(d, """
engine:
  http: {listen: "127.0.0.1:%d"}
  snapshot: {dir: snap, every: 0, every_records: %d}
sources:
  feed: {type: zmq, socket: pull, bind: "%s"}
operators:
  cdf: {type: ecdf, inputs: [feed], mode: kll, k: 64, key_by: key, max_keys: 50}
sinks:
  out: {type: file, path: out.jsonl, inputs: [cdf]}
""" % (port, EVERY, e_in))
trace = os.path.join(d, "trace.txt")
g = inkt.start([inkt.INKFLOW, "run", cfg], env=dict(os.environ, INKFLOW_SNAPSHOT_TRACE=trace))
inkt.check(inkt.wait_for(lambda: (scrape(port) or {}).get("inkflow_ready") is not None and
                         value(scrape(port), "inkflow_ready", "inkflow_ready") == 1, timeout=20),
           "/ready: the zmq source is bound")

# the output's descriptors: two of out.jsonl, one of them locked (flock)
out = os.path.realpath(os.path.join(d, "out.jsonl"))
fds = [fd for fd in os.listdir("/proc/%d/fd" % g.pid)
       if os.path.realpath("/proc/%d/fd/%s" % (g.pid, fd)) == out]
ino = os.stat(out).st_ino
locked = []
with open("/proc/locks") as f:
    held = [ln.split() for ln in f]
for fd in fds:
    with open("/proc/%d/fdinfo/%s" % (g.pid, fd)) as f:
        info = f.read()
    locked.append(any(ln.startswith("lock:") for ln in info.splitlines()))
inkt.check(len(fds) == 2 and sorted(locked) == [False, True],
           "inkflow holds two descriptors of the output, one locked (%s: %s)" % (fds, locked))
inkt.check(any(h[1] == "FLOCK" and h[5].endswith(":%d" % ino) for h in held if len(h) > 5),
           "the output is flock'ed (/proc/locks)")

ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.connect(e_in)
for i in range(N):
    push.send(msgpack.packb({"x": [(i % 97) / 97.0], "key": "k%d" % (i % 40)}))

fams = None


def four():
    global fams
    fams = scrape(port)
    return fams is not None and value(fams, "inkflow_snapshots", "inkflow_snapshots_total") == 4 \
        and value(fams, "inkflow_snapshot_pause_seconds",
                  "inkflow_snapshot_pause_seconds_count") == 4


inkt.check(inkt.wait_for(four, timeout=60),
           "/metrics: 4 snapshots written, 4 pauses counted after %d records" % N)
if fams:
    v = lambda s, **k: value(fams, "inkflow_snapshot_pause_seconds", s, **k)  # noqa: E731
    inkt.check(fams["inkflow_snapshot_pause_seconds"].type == "histogram",
               "inkflow_snapshot_pause_seconds is a histogram")
    bks = [(s.labels["le"], s.value) for s in fams["inkflow_snapshot_pause_seconds"].samples
           if s.name.endswith("_bucket")]
    counts = [c for _, c in bks]
    inkt.check(len(bks) == 11 and bks[-1] == ("+Inf", 4) and counts == sorted(counts),
               "buckets non-decreasing up to +Inf = 4 (%s)" % bks)
    last = value(fams, "inkflow_snapshot_pause_last_seconds", "inkflow_snapshot_pause_last_seconds")
    mx = value(fams, "inkflow_snapshot_pause_max_seconds", "inkflow_snapshot_pause_max_seconds")
    total = v("inkflow_snapshot_pause_seconds_sum")
    inkt.check(last is not None and mx is not None and total is not None and
               0 < last <= mx <= total + 1e-9,
               "pause: 0 < last %s <= max %s <= sum %s" % (last, mx, total))

g.send_signal(signal.SIGTERM)
try:
    _, err = g.communicate(timeout=60)
except Exception:
    g.kill()
    _, err = g.communicate()
err = err.decode()
inkt.check(g.returncode == 0, "SIGTERM: exit 0 (%s)" % g.returncode)
inkt.check("snapshots: 5 written, 0 failed" in err, "4 periodic snapshots and the final one")

with open(trace) as f:
    rows = [ln.split() for ln in f]
ok = len(rows) == 4 and all(len(r) == 8 and r[4] == "1" and int(r[6]) >= 0 and int(r[7]) >= 0
                            for r in rows)
win = [(float(r[0]), float(r[1]), float(r[2]), float(r[5])) for r in rows] if ok else []
ok = ok and all(s <= e and 0 < p <= e - s + 1e-6 and 0 <= c <= p + 1e-6 for s, e, p, c in win)
ok = ok and all(win[k][1] <= win[k + 1][0] for k in range(len(win) - 1))
inkt.check(ok, "INKFLOW_SNAPSHOT_TRACE: 4 written windows, in order, each pause within its "
           "window (%s)" % rows)
with open(out) as f:
    inkt.check(sum(1 for _ in f) == N, "the output holds the %d records" % N)

# Where the output's fdatasync runs: under strace (when it can trace here), a
# file-to-file graph with 6 periodic snapshots; every writer child fdatasyncs
# the output before its rename, and the main thread only for the final
# snapshot (written by the main thread).
strace = shutil.which("strace")
d2 = inkt.tmpdir()
with open(os.path.join(d2, "in.msgpack"), "wb") as f:
    for i in range(6000):
        f.write(msgpack.packb({"x": [(i % 97) / 97.0], "key": "k%d" % (i % 40)}))
cfg2 = inkt.write_config(d2, """
engine: {snapshot: {dir: snap, every: 0, every_records: 1000}}
sources:
  src: {type: file, path: in.msgpack}
operators:
  cdf: {type: ecdf, inputs: [src], mode: kll, k: 64, key_by: key, max_keys: 50}
sinks:
  out: {type: file, path: out.jsonl, inputs: [cdf]}
""")
st = os.path.join(d2, "strace.txt")
r = inkt.run([strace, "-f", "-qq", "-o", st, "-e", "trace=fdatasync,rename", "-e", "signal=none",
              inkt.INKFLOW, "run", cfg2], timeout=120) if strace else None
if r is None or r.returncode != 0 or not os.path.exists(st):
    print("skip where the output's fdatasync runs: strace %s (%s)" % (
        "is not installed" if not strace else "cannot trace here",
        r.stderr.decode()[-200:] if r else ""))
else:
    calls = {}
    with open(st) as f:
        for ln in f:
            w = ln.split(None, 1)
            if len(w) == 2 and w[0].isdigit():
                calls.setdefault(int(w[0]), []).append(w[1].split("(")[0])
    main = min(calls)  # the first traced process is inkflow itself
    writers = {p: c for p, c in calls.items() if p != main and "rename" in c}
    inkt.check(len(writers) == 6 and all(c.index("fdatasync") < c.index("rename")
                                         for c in writers.values() if "fdatasync" in c) and
               all("fdatasync" in c for c in writers.values()),
               "6 writer children, each fdatasyncs the output before its rename (%s)" % writers)
    inkt.check(calls[main].count("fdatasync") == 1 and calls[main].count("rename") == 1,
               "the main thread fdatasyncs once, for the final snapshot it writes (%s)" %
               calls[main])
inkt.finish()

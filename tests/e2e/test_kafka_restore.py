"""Kafka source restores on the mock cluster (tests/kafka_mock.c), docs/kafka.md:

- a snapshot whose offsets are older than the group's committed ones: --restore
  resumes from the snapshot (the records after it are read again, none skipped),
  and the group's committed offsets follow the restored run's snapshots;
- a snapshot whose topic no longer exists: --restore fails with a clear error and
  exit code 2, and leaves the snapshot and the output file untouched.
"""
import hashlib
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inkkafka  # noqa: E402
import inkt  # noqa: E402

mock = inkkafka.Mock({"in": 2})
d = inkt.tmpdir()
os.makedirs(os.path.join(d, "snap"))
cfg = inkt.write_config(d, """
engine:
  snapshot: {dir: snap, every: 1s}
sources:
  feed:
    type: kafka
    brokers: "%s"
    topic: in
    group: g
    options: {session.timeout.ms: 3000, heartbeat.interval.ms: 500}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: file, path: out.jsonl, inputs: [pass]}
""" % mock.bootstrap)
out = os.path.join(d, "out.jsonl")
snap = os.path.join(d, "snap", "graph.snap")


def lines():
    try:
        with open(out) as f:
            return sum(1 for l in f if l.endswith("\n"))
    except FileNotFoundError:
        return 0


def run_until(n, restore):
    p = inkt.start([inkt.INKFLOW, "run", cfg] + (["--restore"] if restore else []))
    ok = inkt.wait_for(lambda: lines() >= n, timeout=60)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    return ok and p.returncode == 0, err.decode()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# first run: 400 records, stopped by SIGTERM (final snapshot, offsets committed)
mock.produce("in", [{"key": "k%d" % (i % 7), "x": [float(i)]} for i in range(400)])
ok, err = run_until(400, False)
inkt.check(ok, "first run wrote 400 records and stopped with 0")
first = mock.committed("g", "in")
inkt.check(sum(first.values()) == 400, "the final snapshot's offsets were committed: %r" % first)

# 300 more records; the group's committed offsets move past them (as if another
# consumer of the group had read them): the snapshot is now older than the group
mock.produce("in", [{"key": "k%d" % (i % 7), "x": [float(i)]} for i in range(400, 700)])
ends = {}
for r in mock.consume("in"):
    ends[r[0]] = max(ends.get(r[0], 0), r[1] + 1)
mock.commit("g", "in", ends)
inkt.check(mock.committed("g", "in") == ends, "group offsets moved ahead of the snapshot: %r" % ends)
ok, err = run_until(700, True)
recs = inkt.read_jsonl(out)
xs = sorted(int(r["x"][0]) for r in recs)
inkt.check(ok and xs == list(range(700)),
           "restore resumed from the snapshot, not the committed offsets: every record once "
           "(%d lines, %d distinct)" % (len(recs), len(set(xs))))
inkt.check("2 at the position the state holds" in err, "both partitions sought to the snapshot")
if not ok or "2 at the position the state holds" not in err:
    print(err)
inkt.check(mock.committed("g", "in") == ends, "after the restored run, the group's offsets are "
           "the ends again (its snapshots committed them)")

# the topic is gone: refuse, touch nothing
before_snap, before_out = sha(snap), sha(out)
inkt.check(mock.command("topic_error in 3") == "ok", "mock: topic 'in' now unknown")
r = inkt.run([inkt.INKFLOW, "run", cfg, "--restore"], timeout=60)
msg = r.stderr.decode()
inkt.check(r.returncode == 2, "restore without the topic exits 2 (got %d)" % r.returncode)
inkt.check("topic 'in' no longer exists" in msg and "snapshot is untouched" in msg,
           "clear error: %s" % msg.strip().splitlines()[-1:] if msg.strip() else "(none)")
inkt.check(sha(snap) == before_snap and sha(out) == before_out,
           "snapshot and output file untouched")
mock.stop()
inkt.finish()

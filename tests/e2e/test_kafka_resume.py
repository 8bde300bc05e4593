"""Kafka source -> ecdf (key_by: key) -> Kafka sink on librdkafka's mock cluster
(tests/kafka_mock.c), the real inkflow binary (docs/kafka.md):

- 100,000 keyed records on a 4-partition topic, snapshots every second, kill -9 at
  a random record while records are being produced and consumed, then --restore: the per-key state (queried
  through a router source) and the sink's records de-duplicated by the source
  partition and offset they carry equal those of an uninterrupted run; the
  records written twice (after the snapshot, before the crash) are identical;
  the restored run starts the partitions the snapshot holds at its offsets.
"""
import os
import random
import re
import signal
import subprocess
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inkkafka  # noqa: E402
import inkt  # noqa: E402

N, CHUNKS, KEYS = 100000, 10, 40
seed = int(os.environ.get("INK_TEST_SEED") or time.time())
print("seed %d (INK_TEST_SEED reproduces the kill point)" % seed)
rnd = random.Random(seed)
data = random.Random(7)
records = [{"key": "s%02d" % data.randrange(KEYS), "x": [round(data.gauss(50, 10), 3)]}
           for _ in range(N)]

mock = inkkafka.Mock({"in": 4, "out_crash": 4, "out_whole": 4})
d = inkt.tmpdir()


def config(name, group, out):
    ep = inkt.endpoint()
    http = inkt.free_port()
    path = inkt.write_config(d, """
engine:
  snapshot: {dir: snap_%s, every: 1s}
  http: {listen: "127.0.0.1:%d"}
sources:
  feed:
    type: kafka
    brokers: "%s"
    topic: in
    group: %s
    options: {session.timeout.ms: 3000, heartbeat.interval.ms: 500}
  api: {type: zmq, socket: router, bind: "%s", reply_from: pct}
operators:
  pct: {type: ecdf, inputs: [feed, api], mode: kll, k: 200, key_by: key, max_keys: 64}
sinks:
  out: {type: kafka, brokers: "%s", topic: %s, inputs: [pct]}
""" % (name, http, mock.bootstrap, group, ep, mock.bootstrap, out), name + ".yaml")
    os.makedirs(os.path.join(d, "snap_" + name), exist_ok=True)
    return path, ep


def sink_records(topic):
    """{(source partition, source offset): [payload, ...]} of the sink's topic."""
    out = {}
    for _, _, _, value, _ in mock.consume(topic):
        rec = msgpack.unpackb(value)
        out.setdefault((rec["kafka_partition"], rec["kafka_offset"]), []).append(rec)
    return out


def wait_all(topic, timeout=120):
    """Until every input record has its output (de-duplicated)."""
    t = time.time() + timeout
    while time.time() < t:
        if mock.count(topic) >= N:
            recs = sink_records(topic)
            if len(recs) >= N:
                return recs
        time.sleep(0.3)
    return sink_records(topic)


def state(ep):
    """Per-key answers: cdf at a few points and a few quantiles (without the
    request's own arrival time t)."""
    out = {}
    for i in range(KEYS):
        k = "s%02d" % i
        for x in (35.0, 50.0, 65.0):
            out[(k, "cdf", x)] = inkt.query(ep, {"op": "cdf", "key": k, "x": [x]})[1]
        for r in (0.1, 0.5, 0.9):
            out[(k, "q", r)] = inkt.query(ep, {"op": "quantile", "key": k, "r": r})[1]
    for v in out.values():
        v.pop("t", None)
    return out


def produce_chunk(i):
    lo, hi = i * N // CHUNKS, (i + 1) * N // CHUNKS
    return mock.produce("in", records[lo:hi])


# --- the run that crashes: records arrive in chunks while it runs -------------------
cfg, ep = config("crash", "g_crash", "out_crash")
p = inkt.start([inkt.INKFLOW, "run", cfg])
kill_chunk = rnd.randrange(2, CHUNKS - 2)
produced = 0
for i in range(kill_chunk):
    produced += produce_chunk(i)
# a snapshot holding offsets is durable once the group has committed some (commits
# follow snapshots)
inkt.check(inkt.wait_for(lambda: sum(max(o, 0) for o in mock.committed("g_crash", "in")
                                     .values()) > 0, timeout=60),
           "offsets committed to Kafka after a snapshot")
# kill while the next chunk is being produced and processed, at a random record of it
lo, hi = kill_chunk * N // CHUNKS, (kill_chunk + 1) * N // CHUNKS
bg = inkt.start([inkkafka.TOOL, "produce", mock.bootstrap, "in"], stdin=subprocess.PIPE)
bg.stdin.write(b"".join(msgpack.packb(r) for r in records[lo:hi]))
bg.stdin.close()
target = lo + rnd.randrange(hi - lo)
inkt.check(inkt.wait_for(lambda: mock.count("out_crash") >= target, timeout=90, step=0.01),
           "crash run reached record %d of chunk %d" % (target, kill_chunk))
os.kill(p.pid, signal.SIGKILL)
p.wait()
bg.wait(60)
produced += int(bg.stdout.read().decode() or 0)
crash_log = p.stderr.read().decode()
before = mock.count("out_crash")
print("killed with %d records written by the sink" % before)
for i in range(kill_chunk + 1, CHUNKS):
    produced += produce_chunk(i)
inkt.check(produced == N, "%d records produced" % produced)

p = inkt.start([inkt.INKFLOW, "run", cfg, "--restore"])
crash = wait_all("out_crash")
state_crash = state(ep)
p.send_signal(signal.SIGTERM)
_, err = p.communicate(timeout=60)
err = err.decode()
m = re.search(r"assigned 4 partition\(s\), (\d) at the position the state holds", err)
if not m or m.group(1) == "0":
    print("--- killed run:\n" + crash_log[-3000:] + "\n--- restored run:\n" + "\n".join(l for l in err.splitlines() if "[api]" not in l))
inkt.check(p.returncode == 0, "restored run exits 0 on SIGTERM")
inkt.check(m and m.group(1) != "0",
           "restored run starts the %s partition(s) the snapshot holds at its offsets (the "
           "others where the first run started: nothing of them is in the state)"
           % (m.group(1) if m else "?"))

# --- the uninterrupted run on the same topic, another group -------------------------
cfg2, ep2 = config("whole", "g_whole", "out_whole")
p2 = inkt.start([inkt.INKFLOW, "run", cfg2])
whole = wait_all("out_whole")
state_whole = state(ep2)
p2.send_signal(signal.SIGTERM)
p2.communicate(timeout=60)
inkt.check(p2.returncode == 0, "uninterrupted run exits 0")

inkt.check(len(whole) == N and all(len(v) == 1 for v in whole.values()),
           "uninterrupted run: %d distinct (partition, offset), no duplicates" % len(whole))
inkt.check(len(crash) == N, "crash + restore: %d distinct (partition, offset)" % len(crash))
dups = sum(len(v) - 1 for v in crash.values())
same_dups = all(all(r == v[0] for r in v) for v in crash.values())
inkt.check(same_dups, "the %d records written twice (after the snapshot) are identical" % dups)
diff = [k for k in whole if k not in crash or crash[k][0] != whole[k][0]]
inkt.check(not diff, "sink records de-duplicated by (partition, offset) equal the "
           "uninterrupted run's (%d differ%s)" % (len(diff), ", e.g. %r" % (diff[:3],) if diff else ""))
bad = [k for k in state_whole if state_whole[k] != state_crash.get(k)]
for k in bad[:3]:
    print("  %r: uninterrupted %r, restored %r" % (k, state_whole[k], state_crash.get(k)))
inkt.check(not bad and all("n" in v for v in state_whole.values()),
           "per-key state after kill -9 + restore equals the uninterrupted run's "
           "(%d of %d answers differ%s)" % (len(bad), len(state_whole),
                                            ", e.g. %r" % (bad[:2],) if bad else ""))
mock.stop()
inkt.finish()

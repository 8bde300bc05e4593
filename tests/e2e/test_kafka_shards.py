"""Kafka scale-out (docs/kafka.md#scale-out): keyed state in per-partition shards that
move with their partitions between the processes of one consumer group, on librdkafka's
mock cluster (tests/kafka_mock.c) and the real inkflow binary.

- One uninterrupted process (its own group and shard directory) reads the same topic
  alongside: the reference, per key, as the sketch bytes in its shard files.
- Two processes on one config (one group, one shared shard directory, keyed KLL ecdf,
  a shard written every second), each owning two of the 4 partitions; one is killed
  with SIGKILL mid-stream; the survivor takes its partitions over from their shards;
  the records read again (inkflow_kafka_records_replayed_total) are exactly those after
  the dead process's last shards (read from the files the moment it died).
- A third process joins mid-stream and gets partitions by cooperative rebalance (the
  survivor hands them over with their shards: nothing replayed).
- At the end, every key's sketch in the shared shard files is byte for byte the
  reference's: no key missing, no record lost or counted twice.

200,000 records, the issue's count (INK_SHARDS_N sets another): about 30 s, most of it
the group's own time (a 3 s session timeout, cooperative rebalances), not the records'."""
import glob
import os
import re
import signal
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inkkafka  # noqa: E402
import inkprom  # noqa: E402
import inkt  # noqa: E402

N = int(os.environ.get("INK_SHARDS_N") or 200000)
KEYS, CHUNKS = 40, 10
data = __import__("random").Random(11)
records = [{"key": "s%02d" % data.randrange(KEYS), "x": [round(data.gauss(50, 10), 3)]}
           for _ in range(N)]
chunks = [records[i * N // CHUNKS:(i + 1) * N // CHUNKS] for i in range(CHUNKS)]

mock = inkkafka.Mock({"in": 4, "out": 4})
d = inkt.tmpdir()


def config(name, group, snapdir):
    os.makedirs(os.path.join(d, snapdir), exist_ok=True)
    return inkt.write_config(d, """
engine:
  snapshot: {dir: %s, every: 1s}
  http: {listen: "127.0.0.1:0"}
sources:
  feed:
    type: kafka
    brokers: "%s"
    topic: in
    group: %s
    shards: true
    options: {session.timeout.ms: 3000, heartbeat.interval.ms: 300}
operators:
  pct: {type: ecdf, inputs: [feed], mode: kll, k: 200, key_by: key, max_keys: 64}
sinks:
  out: {type: kafka, brokers: "%s", topic: out, inputs: [pct]}
""" % (snapdir, mock.bootstrap, group, mock.bootstrap), name + ".yaml")


Proc = inkkafka.Proc


def owned(p):
    return p.metric("inkflow_kafka_partitions_owned")


def ends():
    """{partition: end offset} of the input topic now."""
    out = {}
    for part, off, _, _, _ in mock.consume("in"):
        out[part] = max(out.get(part, 0), off + 1)
    return out


def shard_file(path):
    with open(path, "rb") as f:
        b = f.read()
    plen = int.from_bytes(b[24:32], "little")  # the snapshot envelope (docs/state.md)
    return msgpack.unpackb(b[32:32 + plen], raw=False, strict_map_key=False)


def sketches(snapdir, group):
    """{key: state bytes} over every shard file of the group, and {partition: offset}."""
    keys, offs, dup = {}, {}, []
    for path in sorted(glob.glob(os.path.join(d, snapdir, group + ".in.*.shard"))):
        s = shard_file(path)
        offs[int(path.rsplit(".", 2)[1])] = s["offset"]
        for node in s["nodes"]:
            for key, blob in node["keys"]:
                dup.append(key) if key in keys else None
                keys[key] = msgpack.packb(blob)
    inkt.check(not dup, "%s: every key in one shard only %s" % (snapdir, dup))
    return keys, offs


END = {}


def produce(recs):
    mock.produce("in", recs)
    END.clear()
    END.update(ends())


def committed_all(group):
    """Every partition's committed offset is its end: read, and its shard durable."""
    c = mock.committed(group, "in")
    return bool(END) and all(c.get(p, -1) == END[p] for p in END)


def records_in(p):
    fams = inkprom.scrape(p.port)
    v = inkprom.value(fams, "inkflow_records_in", "inkflow_records_in_total", node="feed") \
        if fams else None
    return v or 0


def both(a, b, na, nb):
    return lambda: owned(a) == na and owned(b) == nb


# ---- two processes, one group, one shard directory --------------------------------
cfg = config("scale", "scale", "snap")
produce(chunks[0])
# the reference reads along in a group of its own (one process, never interrupted)
ref = Proc(config("ref", "ref", "snap_ref"))
A, B = Proc(cfg), Proc(cfg)  # started together: one generation takes both
inkt.check(inkt.wait_for(both(A, B, 2, 2), 60, 0.1), "A and B: each owns 2 partitions")
produce([r for c in chunks[1:5] for r in c])
inkt.check(inkt.wait_for(lambda: committed_all("scale"), 120, 0.2),
           "chunks 1-4 read; their shards durable and committed")
before = records_in(B)
A.read()
log_at_kill = len(A.log)
replayed_before = A.metric("inkflow_kafka_records_replayed_total")
mock.produce("in", chunks[5] + chunks[6])  # ends() after the kill: B is reading now
inkt.wait_for(lambda: records_in(B) > before, 60, 0.02)
B.p.send_signal(signal.SIGKILL)
B.p.wait()
# B's last shards, as the survivor will find them (it cannot take them before the
# session timeout, 3 s, has passed)
dead = {}
for path in glob.glob(os.path.join(d, "snap", "scale.in.*.shard")):
    s = shard_file(path)
    if s["pid"] == B.p.pid:
        dead[int(path.rsplit(".", 2)[1])] = (s["offset"], s["final"])
END.update(ends())
at_kill = dict(END)
inkt.check(len(dead) == 2, "kill -9 B mid-stream (after %d records); its last shards: %s"
           % (before, sorted(dead.items())))
inkt.check(inkt.wait_for(lambda: owned(A) == 4, 60, 0.1), "A takes B's partitions over")
inkt.check(inkt.wait_for(lambda: committed_all("scale"), 120, 0.2),
           "A reads them to the end; shards committed")
expect = sum(at_kill[p] - o for p, (o, final) in dead.items() if not final)
A.read()
inkt.check(all(re.search(r"in\[%d\]: shard loaded at offset %d, .* by pid %d .*replaying to "
                         r"offset %d\b" % (p, o, B.p.pid, at_kill[p]), A.log)
               for p, (o, _) in dead.items()),
           "A loaded B's partitions at their shards' offsets, to be replayed to their ends")
# A rebalance may also end A's generation mid-commit (ILLEGAL_GENERATION): A then drops
# its own shards unwritten and reloads them (its own replays, said in its log)
own = sum(int(h) - int(o) for o, h in re.findall(
    r"shard loaded at offset (\d+), .* periodically by pid %d .*replaying to offset (\d+)"
    % A.p.pid, A.log[log_at_kill:]))
got = A.metric("inkflow_kafka_records_replayed_total") - replayed_before
inkt.check(got == expect + own,
           "records replayed after the takeover %d == the records after B's last shards %d "
           "(+ %d of A's own reloads)" % (got, expect, own))

# ---- a third process joins mid-stream ----------------------------------------------
produce(chunks[7])
C = Proc(cfg)
inkt.check(inkt.wait_for(lambda: (owned(C) or 0) >= 1 and owned(A) + owned(C) == 4, 60, 0.1),
           "C joins: partitions handed over by cooperative rebalance")
produce([r for c in chunks[8:] for r in c])
inkt.check(inkt.wait_for(lambda: committed_all("scale"), 120, 0.2),
           "every record read, every shard committed")
C.read()
handover = re.findall(r"written at a handover by pid %d" % A.p.pid, C.log)
inkt.check(re.search(r"shard loaded at offset \d+, .* by pid %d" % A.p.pid, C.log),
           "C starts its partitions from A's shards (%d written at the handover; a commit "
           "that meets the rebalance ends A's generation, and C starts from A's last periodic "
           "shards instead)" % len(handover))
inkt.check(A.stop() == 0 and C.stop() == 0, "A and C: exit 0 on SIGTERM")
scale_keys, scale_offs = sketches("snap", "scale")

# ---- the reference: one process, the whole topic, its own group -------------------
total = dict(END)
inkt.check(sum(total.values()) == N and len(total) == 4, "%d records on 4 partitions" % N)
inkt.check(scale_offs == total, "the shared shards end at the partitions' ends")
inkt.check(inkt.wait_for(lambda: committed_all("ref"), 120, 0.2),
           "reference: every partition read and committed")
inkt.check(ref.stop() == 0, "reference: exit 0 on SIGTERM")
ref_keys, ref_offs = sketches("snap_ref", "ref")
inkt.check(len(ref_keys) == KEYS and ref_offs == total,
           "reference: %d keys in 4 shards at the partitions' ends" % len(ref_keys))
inkt.check(sorted(scale_keys) == sorted(ref_keys), "no key missing (%d keys)" % len(scale_keys))
same = [k for k in ref_keys if scale_keys.get(k) == ref_keys[k]]
inkt.check(len(same) == len(ref_keys),
           "every key's KLL sketch is byte for byte the uninterrupted run's (%d/%d)"
           % (len(same), len(ref_keys)))
for name, p in (("A", A), ("B", B), ("C", C), ("ref", ref)):
    if inkt.failures or os.environ.get("INK_SHARDS_LOGS"):
        print("---- %s ----\n%s" % (name, p.log[-3000:]))
mock.stop()
inkt.finish()

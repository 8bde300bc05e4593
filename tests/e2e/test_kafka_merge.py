"""Global answers by merging, over Kafka (docs/kafka.md#scale-out-state-that-moves-with-its-partitions,
docs/ecdf.md#global-answers-by-merging), on librdkafka's mock cluster and the real binary.

- Two publishers on one config (one group, `shards: true`, shared shard directory, a
  shard every second) read a 4-partition keyed topic; each owns two partitions; a keyed
  KLL ecdf (k 200) publishes its cumulative partial every 100 records of a key into a
  partials topic (kafka sink, msgpack).
- A third, one-process graph reads the partials topic: `merge` (mode kll) and a zmq
  router. Its cdf and quantile answers are within eps(k) of the exact ECDF of ALL the
  values produced, with n the total and one source per (key, partition).
- A replay: mid-stream one publisher is killed with SIGKILL once it has read at least
  4,000 records past its last shards (checked while it is stopped: no race), and a new
  process starts on the same config; the group gives the partitions out again, they
  start from the dead one's shards and re-publish partials the merge already holds,
  with older or equal offsets. The merge replaces rather than adds: n is still the
  total, the answers are those of the exact ECDF, and the partials it ignored as stale
  (on /metrics) are exactly those whose offset is below one it read before (computed
  from the partials topic).

200,000 values (the issue's count; INK_KMERGE_N sets another, a multiple of 4,000)."""
import bisect
import glob
import os
import random
import re
import signal
import sys

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inkkafka  # noqa: E402
import inkt  # noqa: E402

N = int(os.environ.get("INK_KMERGE_N") or 200000)
KEYS, PUBLISH, K = 40, 100, 200
EPS = 2.296 / K ** 0.9723  # ink__kll_eps(k, false), as tests/e2e/test_merge.py
PER = N // KEYS  # a multiple of PUBLISH: every record of a key ends up in a partial
assert PER % PUBLISH == 0
rnd = random.Random(14)
records = []
for j in range(KEYS):
    for _ in range(PER):  # a different distribution per key: the union is not any one's
        v = rnd.gauss(3 * (j % 5), 1 + j % 3) if j % 4 else rnd.expovariate(0.5)
        records.append({"key": "s%02d" % j, "x": [round(v, 6)]})
rnd.shuffle(records)
alls = sorted(r["x"][0] for r in records)

mock = inkkafka.Mock({"in": 4, "parts": 16})  # 16: the per-record outputs go there too
d = inkt.tmpdir()
os.makedirs(os.path.join(d, "snap"))
pub_cfg = inkt.write_config(d, """
engine:
  snapshot: {dir: snap, every: 1s}
  http: {listen: "127.0.0.1:0"}
sources:
  feed:
    type: kafka
    brokers: "%s"
    topic: in
    group: pub
    shards: true
    options: {session.timeout.ms: 3000, heartbeat.interval.ms: 300}
operators:
  pct: {type: ecdf, inputs: [feed], mode: kll, k: %d, key_by: key, max_keys: 64,
        publish: %d}
sinks:
  parts: {type: kafka, brokers: "%s", topic: parts, inputs: [pct]}
""" % (mock.bootstrap, K, PUBLISH, mock.bootstrap), "pub.yaml")
ep = inkt.endpoint()
merge_cfg = inkt.write_config(d, """
engine:
  http: {listen: "127.0.0.1:0"}
sources:
  parts: {type: kafka, brokers: "%s", topic: parts, group: merge}
  api: {type: zmq, socket: router, bind: "%s", reply_from: all}
operators:
  all: {type: merge, inputs: [parts, api], mode: kll, k: %d, max_sources: 64}
sinks:
  merged: {type: file, path: merged.jsonl, format: jsonl, inputs: [all]}
""" % (mock.bootstrap, ep, K), "merge.yaml")


Proc = inkkafka.Proc


def owned(p):
    return p.metric("inkflow_kafka_partitions_owned")


def records_in(p, node="feed"):
    return p.metric("inkflow_records_in", "inkflow_records_in_total", node) or 0


def ask(q):
    rc, rep = inkt.query(ep, q)
    return rep if rc == 0 else {}


def merged_n():
    return ask({"op": "cdf", "x": [0.0]}).get("n")


def shard_offsets(pid):
    """{partition: offset} of the shard files written by pid."""
    out = {}
    for path in glob.glob(os.path.join(d, "snap", "pub.in.*.shard")):
        with open(path, "rb") as f:
            b = f.read()
        plen = int.from_bytes(b[24:32], "little")  # the snapshot envelope (docs/state.md)
        s = msgpack.unpackb(b[32:32 + plen], raw=False, strict_map_key=False)
        if s["pid"] == pid:
            out[int(path.rsplit(".", 2)[1])] = s["offset"]
    return out


M = Proc(merge_cfg)
inkt.check(inkt.wait_for(lambda: inkt.listening(ep) or M.p.poll() is not None, 30) and
           M.p.poll() is None, "the merge graph runs")
if M.p.poll() is not None:
    M.stop()
    print(M.log[-2000:])
    mock.stop()
    inkt.finish()
A, B = Proc(pub_cfg), Proc(pub_cfg)
inkt.check(inkt.wait_for(lambda: owned(A) == 2 and owned(B) == 2, 60, 0.1),
           "publishers A and B: each owns 2 of the 4 partitions")

# ---- half the values; then the rest, and B dies mid-stream ---------------------------
half = N // 2
mock.produce("in", records[:half])


def ends():
    """{partition: end offset} of the input topic now."""
    out = {}
    for part, off, _, _, _ in mock.consume("in"):
        out[part] = max(out.get(part, 0), off + 1)
    return out


def committed_all(end):
    c = mock.committed("pub", "in")
    return all(c.get(p, -1) == end[p] for p in end)


end = ends()
inkt.check(inkt.wait_for(lambda: committed_all(end), 120, 0.2),
           "the first half read; its shards durable and committed")
killed, replay, shards = False, 0, {}


def try_kill():
    """SIGKILL B if it has read >= 4,000 records past its last shards (one per partition
    it owns). Checked while B is
    stopped (SIGSTOP): its shard files cannot move between the check and the kill."""
    global killed, replay, shards
    seen = records_in(B)  # B has read at least this many (it reads only its 2 partitions)
    B.p.send_signal(signal.SIGSTOP)
    shards = shard_offsets(B.p.pid)
    replay = seen - sum(shards.values())
    if len(shards) == 2 and replay >= 4000:
        B.p.send_signal(signal.SIGKILL)
        killed = True
    else:
        B.p.send_signal(signal.SIGCONT)
    return killed


# the second half in 10 chunks, B checked after each (within a second) until it is
# 4,000 records past a shard: a shard is written every second, B reads a chunk faster
rest = records[half:]
for c in range(10):
    mock.produce("in", rest[c * len(rest) // 10:(c + 1) * len(rest) // 10])
    if not killed:
        inkt.wait_for(try_kill, 1, 0.05)
if not killed:  # never caught: kill it anyway; the replay checks below will say so
    B.p.send_signal(signal.SIGKILL)
    B.p.send_signal(signal.SIGCONT)
B.p.wait()
inkt.check(killed, "kill -9 B mid-stream, %d records past its last shards %s" % (replay, shards))
# the restarted publisher (a new process on the same config, as a supervisor would)
B2 = Proc(pub_cfg)
end = ends()
inkt.check(sum(end.values()) == N and len(end) == 4, "%d values on 4 partitions" % N)
inkt.check(inkt.wait_for(lambda: committed_all(end), 120, 0.2),
           "A and the restarted B read every partition to its end; shards committed")
B2.read()
inkt.check(re.search(r"shard loaded at offset \d+, .* by pid %d" % B.p.pid, A.log + B2.log) or
           (A.read() and re.search(r"shard loaded at offset \d+, .* by pid %d" % B.p.pid, A.log)),
           "the dead publisher's partitions start again from its shards")
replayed = sum(p.metric("inkflow_kafka_records_replayed", "inkflow_kafka_records_replayed_total")
               or 0 for p in (A, B2))
inkt.check(replayed >= 4000, "records replayed after the kill: %d" % replayed)

# ---- the partials topic: what the merge reads, in its order per key ----------------
total_parts = mock.count("parts")
parts = {}
for part, off, key, val, _ in sorted(mock.consume("parts")):
    m = msgpack.unpackb(val, raw=False)
    if "partial" in m:
        parts.setdefault((m["key"], m["kafka_partition"]), []).append(
            (part, off, m["kafka_offset"], m["n"]))
stale, dup = 0, 0
# the sink keys a partial by its key: a source's partials are in one partition of the
# topic, so the merge reads them in the order below
inkt.check(all(len({p for p, _, _, _ in seq}) == 1 for seq in parts.values()),
           "every source's partials in one partition of the partials topic")
for src, seq in parts.items():
    held, seen_n = -1, set()
    for _, _, koff, n in seq:
        stale += koff < held
        dup += n in seen_n
        seen_n.add(n)
        held = max(held, koff)
inkt.check(len(parts) == KEYS, "one partial source per (key, partition): %d" % len(parts))
inkt.check(dup > 0 and stale > 0,
           "the replay re-published partials: %d again, %d of them older than one before" %
           (dup, stale))

# ---- the merge: n the total, answers within eps of the exact ECDF ------------------
inkt.check(inkt.wait_for(lambda: merged_n() == N, 120, 0.2),
           "the merge reaches n = %d (last: %s)" % (N, merged_n()))
inkt.check(inkt.wait_for(lambda: records_in(M, "parts") >= total_parts, 60, 0.2),
           "the merge read every record of the partials topic (%d)" % total_parts)
got_stale = M.metric("inkflow_operator_merge_stale_partials", node="all")
inkt.check(got_stale == stale, "merge ignored as stale the %d older partials: %s" %
           (stale, got_stale))
fails, worst = [], 0.0
for i in range(25):
    x = alls[int((i + 0.5) / 25 * N)]
    rep = ask({"op": "cdf", "x": [x]})
    e = abs(rep.get("F", 9) - bisect.bisect_right(alls, x) / N)
    worst = max(worst, e)
    if rep.get("n") != N or rep.get("sources") != KEYS or e > EPS:
        fails.append(("cdf", x, rep))
for r in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
    q = ask({"op": "quantile", "r": r}).get("q")
    if q is None or max(bisect.bisect_left(alls, q) / N - r, r - bisect.bisect_right(alls, q) / N) > EPS:
        fails.append(("quantile", r, q))
inkt.check(not fails, "cdf at 25 points within eps %.5f of the exact ECDF of all %d values "
           "(worst %.5f), 7 quantiles too, n = %d over %d sources; failures: %s"
           % (EPS, N, worst, N, KEYS, fails[:3]))
inkt.check(A.stop() == 0 and B2.stop() == 0 and M.stop() == 0, "A, B2, merge: exit 0 on SIGTERM")
# the merge's output: one record per partial it took, with n over every source held
ns = [r.get("n") for r in inkt.read_jsonl(os.path.join(d, "merged.jsonl"))]
down = [(a, b) for a, b in zip(ns, ns[1:]) if b < a]
inkt.check(ns and ns[-1] == N and max(ns) == N and not down,
           "through the replay the merged n never went down nor past %d (%d partials taken; "
           "decreases: %s)" % (N, len(ns), down[:3]))
if inkt.failures or os.environ.get("INK_KMERGE_LOGS"):
    for name, p in (("A", A), ("B", B), ("B2", B2), ("M", M)):
        print("---- %s ----\n%s" % (name, p.log[-3000:]))
mock.stop()
inkt.finish()

"""End to end: global answers by merging ecdf partials (docs/ecdf.md#global-answers-by-merging).

- One graph: a file source of 4 keys x 5,000 values, an ecdf kll (k 200,
  key_by: key, 4 states) with publish: 1000, a merge node, a zmq router:
  cdf and quantile answered on the merge of the 4 partials, within eps(k) of
  the exact ECDF of all 20,000 values, n = 20,000 and sources = 4.
- The partials through a msgpack file into a second graph that reads the file
  twice (a replay): still n = 20,000 and the same answers (replaced, not added).
- The end of a stream whose count is not a multiple of publish: the flush
  sends the last partial (n = 20,000 on the merge's last record).
- A merge of another k refuses the partials (counted as rejected).
"""
import bisect
import math
import os
import random
import signal

import inkt

d = inkt.tmpdir()
K = 200
EPS = 2.296 / K ** 0.9723  # ink__kll_eps(k, false)
PER, KEYS = 5000, ["a", "b", "c", "d"]

rnd = random.Random(14)
vals = {k: [] for k in KEYS}
with open(os.path.join(d, "in.csv"), "w") as f:
    f.write("key,x\n")
    for i in range(PER * len(KEYS)):
        k = KEYS[i % len(KEYS)]
        j = KEYS.index(k)
        v = rnd.gauss(3 * j, 1 + j) if j != 3 else rnd.expovariate(0.5)
        vals[k].append(v)
        f.write("%s,%.17g\n" % (k, v))
alls = sorted(v for k in KEYS for v in vals[k])
N = len(alls)


def exact_F(x):
    return bisect.bisect_right(alls, x) / N


def check_answers(ep, label):
    fails, worst = [], 0.0
    for i in range(25):
        x = alls[int((i + 0.5) / 25 * N)]
        rc, rep = inkt.query(ep, {"op": "cdf", "x": [x]})
        e = abs(rep.get("F", 9) - exact_F(x))
        worst = max(worst, e)
        if rc != 0 or rep.get("n") != N or rep.get("sources") != 4 or e > EPS:
            fails.append(("cdf", x, rep))
    for r in (0.01, 0.1, 0.5, 0.9, 0.99):
        rc, rep = inkt.query(ep, {"op": "quantile", "r": r})
        q = rep.get("q")
        if rc != 0 or q is None:
            fails.append(("quantile", r, rep))
            continue
        lo, hi = bisect.bisect_left(alls, q) / N, bisect.bisect_right(alls, q) / N
        if max(lo - r, r - hi) > EPS:
            fails.append(("quantile", r, rep))
    inkt.check(not fails, "%s: cdf within eps %.5f (worst %.5f), quantiles too, n = %d over 4 "
               "sources; failures: %s" % (label, EPS, worst, N, fails[:3]))


def wait_n(ep):
    return inkt.wait_for(lambda: inkt.query(ep, {"op": "cdf", "x": [0.0]})[1].get("n") == N,
                         timeout=60, step=0.2)


def stop(p, node):
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=30)
    except Exception:
        err = b""
    inkt.check(p.returncode == 0, "%s exits 0 on SIGTERM" % node)
    return inkt.summary_row(err.decode(), node)


# 1. One graph: file -> keyed ecdf (publish) -> merge <- router.
ep = inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: in.csv}
  api: {type: zmq, socket: router, bind: "%s", reply_from: all}
operators:
  sketch: {type: ecdf, inputs: [src], mode: kll, k: %d, key_by: key, max_keys: 4, publish: 1000}
  all: {type: merge, inputs: [sketch, api], mode: kll, k: %d, max_sources: 8}
sinks:
  parts: {type: file, path: parts.mp, format: msgpack, inputs: [sketch]}
""" % (ep, K, K), "one.yaml")
g = inkt.start([inkt.INKFLOW, "run", cfg], cwd=d)
inkt.check(wait_n(ep), "merge of the 4 keyed states reaches n = %d" % N)
check_answers(ep, "one graph, router")
row = stop(g, "all")
# in: 20,000 per-record outputs (skipped) + 20 partials + the requests
inkt.check(row is not None and row["rejected"] == 0 and row["in"] >= N + 20,
           "merge took every partial, refused none: %s" % row)

# 2. A replay: the partials file read twice into a merge.
ep2 = inkt.endpoint()
cfg2 = inkt.write_config(d, """
sources:
  first: {type: file, path: parts.mp}
  again: {type: file, path: parts.mp}
  api: {type: zmq, socket: router, bind: "%s", reply_from: all}
operators:
  all: {type: merge, inputs: [first, again, api], mode: kll, k: %d}
sinks:
  out: {type: file, path: replayed.jsonl, format: jsonl, inputs: [all]}
""" % (ep2, K), "replay.yaml")
g2 = inkt.start([inkt.INKFLOW, "run", cfg2], cwd=d)
inkt.check(wait_n(ep2), "replayed partials: n = %d, not doubled" % N)
check_answers(ep2, "partials read twice from a msgpack file")
stop(g2, "all")

# 3. The end of the stream: 5,000 per key, publish 1500: the flush sends the rest.
cfg3 = inkt.write_config(d, """
sources:
  src: {type: file, path: in.csv}
operators:
  sketch: {type: ecdf, inputs: [src], mode: kll, k: %d, key_by: key, max_keys: 4, publish: 1500}
  all: {type: merge, inputs: [sketch], mode: kll, k: %d}
  k64: {type: merge, inputs: [sketch], mode: kll, k: 64}
sinks:
  out: {type: file, path: merged.jsonl, format: jsonl, inputs: [all]}
""" % (K, K), "flush.yaml")
r = inkt.run([inkt.INKFLOW, "run", cfg3], cwd=d)
out = inkt.read_jsonl(os.path.join(d, "merged.jsonl"))
inkt.check(r.returncode == 0 and out and out[-1].get("n") == N and out[-1].get("sources") == 4,
           "flush publishes the last partial: %s (rc %d)" % (out[-1:] if out else None,
                                                             r.returncode))
row = inkt.summary_row(r.stderr.decode(), "k64")
inkt.check(row is not None and row["rejected"] == 4 * 4,
           "a merge of k 64 refuses all 16 k-200 partials: %s" % row)
inkt.finish()

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
- rls_sketch (docs/rls_sketch.md#publish-and-merge): a keyed rls_sketch with
  predict and publish over 3 keys of disjoint points, a merge mode rls with a
  router: dict, tau, deff, predict answered on the DISQUEAK merge; every 4th
  merged atom's tau within [tau/alpha, tau] of exact RLS over all the points (numpy);
  a merge with another gamma refuses every partial; cdf is refused on it; the
  final snapshot restores the merge (--restore): the same replies, bit for bit.
"""
import bisect
import math
import os
import random
import re
import signal

import numpy as np

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

# 4. rls_sketch partials -> merge mode rls, answered through a router.
NR, SIG, G = 900, 1.5, 1.0
rnd = random.Random(15)
P = [[rnd.gauss(0, 1) for _ in range(3)] for _ in range(NR)]
for i in range(0, NR, 3):
    P[i] = [2.0 + 0.1 * v for v in P[i]]
with open(os.path.join(d, "pts.csv"), "w") as f:
    f.write("key,a,b,c,y\n")
    for i, p in enumerate(P):
        y = math.sin(2 * p[0]) + p[1] * p[2] + rnd.gauss(0, 0.1)
        f.write("p%d,%.17g,%.17g,%.17g,%.17g\n" % (i * 3 // NR, p[0], p[1], p[2], y))
common = "dim: 3, kernel: {type: gaussian, sigma: %g}, gamma: %g, qbar: 64, max_dict: 512" % (SIG, G)
ep4 = inkt.endpoint()
cfg4 = inkt.write_config(d, """
engine:
  snapshot: {dir: snap4, every: 0}
sources:
  src: {type: file, path: pts.csv}
  api: {type: zmq, socket: router, bind: "%s", reply_from: all}
operators:
  sketch: {type: rls_sketch, inputs: [src], key_by: key, max_keys: 4, %s, predict: true,
           mu: 0.1, publish: 100}
  all: {type: merge, inputs: [sketch, api], mode: rls, %s, predict: true, max_sources: 4}
  g2: {type: merge, inputs: [sketch], mode: rls, dim: 3, kernel: {type: gaussian, sigma: %g},
       gamma: 2.0, qbar: 64, max_dict: 512}
sinks:
  parts: {type: file, path: rls_parts.mp, format: msgpack, inputs: [sketch]}
""" % (ep4, common, common, SIG), "rls.yaml")
g4 = inkt.start([inkt.INKFLOW, "run", cfg4], cwd=d)
inkt.check(inkt.wait_for(lambda: inkt.listening(ep4) or g4.poll() is not None, timeout=30) and
           g4.poll() is None, "the rls graph runs")
if g4.poll() is not None:
    print(g4.communicate()[1].decode()[-2000:])
    inkt.finish()
inkt.check(inkt.wait_for(lambda: inkt.query(ep4, {"op": "deff"})[1].get("n") == NR, timeout=60,
                         step=0.2), "rls merge of the 3 keyed sketches reaches n = %d" % NR)
rc, dic = inkt.query(ep4, {"op": "dict"})
pts = np.array(dic.get("points") or [[0, 0, 0]])
A = np.array(P)
r2 = ((A[:, None, :] - A[None, :, :]) ** 2).sum(-1)
K = np.exp(-r2 / (2 * SIG * SIG))
exact = 1 - G * np.diag(np.linalg.inv(K + G * np.eye(NR)))
ratios, missing = [], 0
for x in pts[::4]:  # a quarter of them (one `inkflow query` each); tests/test_rls_merge.c: all
    i = np.where((A == x).all(axis=1))[0]
    if len(i) != 1:
        missing += 1
        continue
    rc, rep = inkt.query(ep4, {"op": "tau", "x": list(x)})
    ratios.append(rep.get("tau", -1) / exact[i[0]])
inkt.check(rc == 0 and dic.get("sources") == 3 and dic.get("dict") == len(pts) > 0 and missing == 0,
           "dict over 3 sources: %d atoms, all stream points (%d not)" % (len(pts), missing))
inkt.check(ratios and min(ratios) >= 1 / 3 - 1e-9 and max(ratios) <= 1 + 1e-9,
           "every 4th merged atom's tau (%d) in [tau/3, tau] of exact RLS over %d points: "
           "[%.4f, %.4f]" % (len(ratios), NR, min(ratios or [0]), max(ratios or [0])))
rc, rep = inkt.query(ep4, {"op": "deff"})
deff = float(exact.sum())
inkt.check(rc == 0 and deff / 3 * 0.8 <= rep.get("deff", 0) <= deff * 1.2,
           "deff %.2f against exact d_eff %.2f" % (rep.get("deff", 0), deff))
se = f2 = 0.0
for _ in range(20):
    x = [rnd.gauss(0, 1) for _ in range(3)]
    fx = math.sin(2 * x[0]) + x[1] * x[2]
    rc, rep = inkt.query(ep4, {"op": "predict", "x": x})
    se += (rep.get("yhat", 1e9) - fx) ** 2
    f2 += fx * fx
inkt.check(rc == 0 and rep.get("var", 0) > 0 and se < 0.2 * f2,
           "merged predict: held-out squared error %.3f against %.3f predicting 0" % (se, f2))
rc, rep = inkt.query(ep4, {"op": "cdf", "x": [0.0]})
inkt.check(rc != 0, "cdf on an rls merge is refused: %s" % rep)
probe = [{"op": "dict"}, {"op": "deff"}] + [{"op": op, "x": list(x)} for x in pts[:5]
                                           for op in ("tau", "predict")]
before = [{k: v for k, v in inkt.query(ep4, q)[1].items() if k != "t"} for q in probe]
g4.send_signal(signal.SIGTERM)
_, err = g4.communicate(timeout=60)
inkt.check(g4.returncode == 0, "rls graph exits 0 on SIGTERM")
row = inkt.summary_row(err.decode(), "all")
inkt.check(row is not None and row["rejected"] == 1,
           "rls merge took every partial (its one rejection is the cdf request): %s" % row)
row = inkt.summary_row(err.decode(), "g2")
# 300 points per key, publish 100: 3 partials per key (the flush has none left)
inkt.check(row is not None and row["rejected"] == 9,
           "a merge of gamma 2.0 refuses all 9 gamma-1.0 partials: %s" % row)

# 5. The final snapshot (SIGTERM) restores the merge: the same answers, bit for bit.
g5 = inkt.start([inkt.INKFLOW, "run", cfg4, "--restore"], cwd=d)
inkt.check(inkt.wait_for(lambda: inkt.listening(ep4) or g5.poll() is not None, timeout=30) and
           g5.poll() is None, "the rls graph restarts with --restore")
after = [{k: v for k, v in inkt.query(ep4, q)[1].items() if k != "t"}  # t: the request's time
         for q in probe] if g5.poll() is None else []
inkt.check(after == before and before[0].get("sources") == 3,
           "restored merge: dict, deff, tau and predict identical to before the snapshot (%d "
           "replies)" % len(after))
g5.send_signal(signal.SIGTERM)
_, err = g5.communicate(timeout=60)
m = re.search(r"restored from \S+ \((\d+) source records in\)", err.decode())
inkt.check(g5.returncode == 0 and m and int(m.group(1)) >= NR,
           "restored rls graph (from the snapshot: %s) exits 0 on SIGTERM" %
           (m.group(0) if m else None))
inkt.finish()

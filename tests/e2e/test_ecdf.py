"""End to end: the ecdf operator through the real binary on the bundled sensor
data (data/sensors-2010.csv, two sensors, one state per sensor with key_by: key).

- configs/ecdf.yaml validates and runs.
- grid mode with every distinct reading as a node: F, F_lo and F_hi equal the
  exact per-key ECDF of the earlier readings (computed here) exactly; n too.
- grid mode on a coarse grid (nodes 40, 45, .., 75; readings below and above
  it): F_lo / F_hi equal the exact ECDF at the nodes below / above each reading.
- kll mode (k = 200): every F within the rank bound eps(k) of the exact ECDF.
- router queries on a keyed kll graph: cdf at points (within eps) and quantile
  at ranks (the answer's exact rank within eps of r), an unknown key refused.
- exact mode, router: `cdf` with 64 `points` at once equals the count over the
  pending window computed here; 65 points (max_query_points 64) refused.
"""
import bisect
import csv
import json
import os
import signal

import inkt

ROOT = inkt.ROOT
DATA = os.path.join(ROOT, "data", "sensors-2010.csv")
d = inkt.tmpdir()
K = 200
EPS = 2.296 / K ** 0.9723  # ink__kll_eps(k, false): DataSketches' 99% single-rank bound

rows = []
with open(DATA) as f:
    for r in csv.DictReader(f):
        rows.append((r["key"], float(r["temp"])))
keys = sorted(set(k for k, _ in rows))
nodes = sorted(set(v for _, v in rows))

# Exact prequential ECDF per key: F = #(earlier readings of the key <= x) / #earlier.
exact = []  # (key, x, n_before, count_le) in file order
seen = {k: [] for k in keys}
for k, v in rows:
    s = seen[k]
    exact.append((k, v, len(s), bisect.bisect_right(s, v)))
    bisect.insort(s, v)


def ratio(a, n):
    return a / n if n else 0.0


# 1. The example config.
ex = os.path.join(ROOT, "configs", "ecdf.yaml")
v = inkt.run([inkt.INKFLOW, "validate", ex])
inkt.check(v.returncode == 0, "configs/ecdf.yaml validates: %s" % v.stdout.decode().strip())
r = inkt.run([inkt.INKFLOW, "run", ex])
lines = [l for l in r.stdout.decode().splitlines() if l.startswith("#")]
inkt.check(r.returncode == 0 and len(lines) == (len(rows) - 1) // 500 + 1,
           "configs/ecdf.yaml runs: %d sampled lines (rc %d)" % (len(lines), r.returncode))

# 2. One file graph: exact grid (nodes = every distinct reading), coarse grid, kll.
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: %s}
operators:
  fine:   {type: ecdf, inputs: [src], mode: grid, grid: {nodes: [[%s]]}, key_by: key, max_keys: 4}
  coarse: {type: ecdf, inputs: [src], mode: grid, grid: {lo: [40], hi: [75], n: [8]},
           key_by: key, max_keys: 4}
  sketch: {type: ecdf, inputs: [src], mode: kll, k: %d, key_by: key, max_keys: 4}
sinks:
  a: {type: file, path: fine.jsonl, format: jsonl, inputs: [fine]}
  b: {type: file, path: coarse.jsonl, format: jsonl, inputs: [coarse]}
  c: {type: file, path: kll.jsonl, format: jsonl, inputs: [sketch]}
""" % (DATA, ", ".join(repr(x) for x in nodes), K))
r = inkt.run([inkt.INKFLOW, "run", cfg])
inkt.check(r.returncode == 0, "file graph runs: %s" % r.stderr.decode()[-300:])
outs = {}
for name in ("fine", "coarse", "kll"):
    p = os.path.join(d, name + ".jsonl")
    outs[name] = inkt.read_jsonl(p) if os.path.exists(p) else []
    inkt.check(len(outs[name]) == len(rows), "%s: %d records out of %d" % (name, len(outs[name]),
                                                                            len(rows)))


def same_record(o, e):
    return o.get("key") == e[0] and o.get("x") == [e[1]] and o.get("n") == e[2]


bad = sum(1 for o, e in zip(outs["fine"], exact)
          if not (same_record(o, e) and o["F"] == ratio(e[3], e[2]) and o["F_lo"] == o["F"]
                  and o["F_hi"] == o["F"]))
inkt.check(outs["fine"] and bad == 0,
           "grid on the data values: F = F_lo = F_hi = exact per-key ECDF for all %d records "
           "(%d mismatches)" % (len(rows), bad))

cn = [40.0 + 5 * i for i in range(8)]
bad = below = above = 0
prev = {k: [] for k in keys}
for o, (k, x, n, _) in zip(outs["coarse"], exact):
    s = prev[k]
    i = bisect.bisect_right(cn, x)  # nodes <= x are cn[:i]
    lo = ratio(bisect.bisect_right(s, cn[i - 1]), n) if i > 0 else 0.0
    j = bisect.bisect_left(cn, x)  # first node >= x
    hi = ratio(bisect.bisect_right(s, cn[j]), n) if j < len(cn) else (1.0 if n else 0.0)
    below += x < cn[0]
    above += x > cn[-1]
    if not (o.get("key") == k and o.get("n") == n and o["F_lo"] == lo and o["F_hi"] == hi
            and o["F"] == lo):
        bad += 1
    bisect.insort(s, x)
inkt.check(outs["coarse"] and bad == 0 and below > 0 and above > 0,
           "coarse grid: F_lo / F_hi = exact ECDF at the nodes around x for all records "
           "(%d mismatches; %d readings below the grid, %d above)" % (bad, below, above))

errs = [abs(o["F"] - ratio(e[3], e[2])) for o, e in zip(outs["kll"], exact)]
bad = sum(1 for o, e in zip(outs["kll"], exact) if not same_record(o, e))
worst = max(errs) if errs else 1.0
inkt.check(errs and bad == 0 and worst <= EPS,
           "kll k=%d: max |F - exact| = %.5f over %d records (bound eps = %.5f)"
           % (K, worst, len(errs), EPS))

# 3. Router queries on a keyed kll graph fed by the same file.
ep = inkt.endpoint()
qcfg = inkt.write_config(d, """
sources:
  src: {type: file, path: %s}
  api: {type: zmq, socket: router, bind: "%s", reply_from: pct}
operators:
  pct: {type: ecdf, inputs: [src, api], mode: kll, k: %d, key_by: key, max_keys: 4}
sinks:
  out: {type: file, path: served.jsonl, format: jsonl, inputs: [pct]}
""" % (DATA, ep, K), "service.yaml")
graph = inkt.start([inkt.INKFLOW, "run", qcfg])


final = {k: sorted(seen[k]) for k in keys}
total = {k: len(final[k]) for k in keys}
inkt.wait_for(lambda: all(inkt.query(ep, {"op": "cdf", "key": k, "x": [50.0]})[1].get("n")
                          == total[k] for k in keys), timeout=30)
worst_cdf, worst_q, fails = 0.0, 0.0, []
for k in keys:
    s, n = final[k], total[k]
    for x in (30.0, 41.3, 50.0, 55.55, 62.1, 80.0):
        rc, rep = inkt.query(ep, {"op": "cdf", "key": k, "x": [x]})
        e = abs(rep.get("F", 9) - bisect.bisect_right(s, x) / n)
        worst_cdf = max(worst_cdf, e)
        if rc != 0 or rep.get("n") != n or e > EPS:
            fails.append(("cdf", k, x, rep))
    for rr in (0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0):
        rc, rep = inkt.query(ep, {"op": "quantile", "key": k, "r": rr})
        q = rep.get("q")
        if rc != 0 or q is None or rep.get("n") != n or q not in s:
            fails.append(("quantile", k, rr, rep))
            continue
        lo, hi = bisect.bisect_left(s, q) / n, bisect.bisect_right(s, q) / n
        e = max(lo - rr, rr - hi, 0.0)  # distance from r to q's exact rank interval
        worst_q = max(worst_q, e)
        if e > EPS:
            fails.append(("quantile", k, rr, rep))
inkt.check(not fails, "router cdf (max error %.5f) and quantile (max rank error %.5f) within "
           "eps %.5f for %s; failures: %s" % (worst_cdf, worst_q, EPS, keys, fails[:3]))
rc, rep = inkt.query(ep, {"op": "quantile", "key": keys[0], "r": 0.5})
again = inkt.query(ep, {"op": "quantile", "key": keys[0], "r": 0.5})[1]
inkt.check(rc == 0 and rep.get("q") == again.get("q"),
           "a repeated quantile query gives the same answer: %s" % rep)
rc, rep = inkt.query(ep, {"op": "cdf", "key": "no-such-sensor", "x": [50.0]})
inkt.check(rc != 0 and "unknown key" in rep.get("error", ""), "unknown key refused: %s" % rep)
rc, rep = inkt.query(ep, {"op": "quantile", "key": keys[0], "r": 1.5})
inkt.check(rc != 0 and "error" in rep, "quantile r = 1.5 refused: %s" % rep)

graph.send_signal(signal.SIGTERM)
try:
    _, err = graph.communicate(timeout=30)
except Exception:
    err = b""
inkt.check(graph.returncode == 0, "service exits 0 on SIGTERM")
row = inkt.summary_row(err.decode(), "pct")
inkt.check(row is not None and row["rejected"] == 2, "2 refused requests counted: %s" % row)

# 4. exact mode: F of the pending window at many points in one request (`points`, the
#    bichromatic divide and conquer), against a count here; over the wire as JSON.
pts2 = [((i * 7) % 6, (i * 11) % 5) for i in range(300)]  # ties galore
with open(os.path.join(d, "pts2.jsonl"), "w") as f:
    for p in pts2:
        f.write(json.dumps({"x": [float(p[0]), float(p[1])]}) + "\n")
ep = inkt.endpoint()
qcfg = inkt.write_config(d, """
sources:
  src: {type: file, path: pts2.jsonl}
  api: {type: zmq, socket: router, bind: "%s", reply_from: win}
operators:
  win: {type: ecdf, inputs: [src, api], mode: exact, dim: 2, window: 1000,
        max_query_points: 64}
sinks:
  out: {type: file, path: win.jsonl, format: jsonl, inputs: [win]}
""" % ep, "points.yaml")
graph = inkt.start([inkt.INKFLOW, "run", qcfg])
Q = [[a - 1.5 + 0.5 * b, b - 1.0] for a in range(8) for b in range(8)]  # 64: in, on, out
inkt.wait_for(lambda: inkt.query(ep, {"op": "cdf", "x": [9.0, 9.0]})[1].get("n") == len(pts2))
rc, rep = inkt.query(ep, {"op": "cdf", "points": Q})
want = [sum(1 for p in pts2 if p[0] <= q[0] and p[1] <= q[1]) / len(pts2) for q in Q]
inkt.check(rc == 0 and rep.get("n") == len(pts2) and rep.get("F") == want,
           "cdf at 64 points at once = the exact count over the 300 pending points "
           "(%s of 64 equal)" % sum(1 for a, b in zip(rep.get("F") or [], want) if a == b))
rc, rep = inkt.query(ep, {"op": "cdf", "points": Q + [[0.0, 0.0]]})
inkt.check(rc != 0 and "max_query_points" in rep.get("error", ""),
           "65 points (max_query_points 64) refused: %s" % rep)
graph.send_signal(signal.SIGTERM)
graph.communicate(timeout=30)
inkt.check(graph.returncode == 0, "exact service exits 0 on SIGTERM")

inkt.finish()

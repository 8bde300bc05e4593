"""End to end: the rls_sketch operator through the real binary.

1. configs/rls_sketch.yaml (the Seattle weather stream) with its sink turned
   into a JSON Lines file of every record: the fields are there, yhat's
   prequential error is checked against exact prequential KRR computed here
   with numpy (same kernel, same mu), and the dictionary stays within max_dict,
   also when a small cap binds and gamma_eff escalates.
2. A `router` source with `reply_from` the sketch, driven by `inkflow query`:
   records without `op` are learned (the reply is the output record); `tau`,
   `predict`, `deff`, `dict` queries are checked against the values the
   operator reports on arrival and, with `shrink: false`, against exact RLS and
   exact KRR; bad requests get an error reply and the service goes on.
3. key_by with an explicit seed: each key has its own random stream (two keys
   fed the same points sample differently), reproducibly."""
import csv
import json
import math
import os
import signal

import numpy as np

import inkt

ROOT = inkt.ROOT
d = inkt.tmpdir()
DATA = os.path.join(ROOT, "data", "seattle-weather-2012-2015.csv")
CONFIG = os.path.join(ROOT, "configs", "rls_sketch.yaml")


def gauss_kernel(A, B, sigma):
    r2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    return np.exp(-np.maximum(r2, 0) / (2 * sigma * sigma))


# ---------------------------------------------------------------- 1. example config
v = inkt.run([inkt.INKFLOW, "validate", CONFIG])
inkt.check(v.returncode == 0, "configs/rls_sketch.yaml validates: %s" % v.stdout.decode().strip())

with open(CONFIG) as f:
    text = f.read()
out_path = os.path.join(d, "out.jsonl")
for old, new in (("../data/seattle-weather-2012-2015.csv", DATA), ('path: "-"', "path: out.jsonl"),
                 ("format: text", "format: jsonl"), ("every: 100", "every: 1")):
    inkt.check(old in text, "example config contains %r" % old)
    text = text.replace(old, new)
cfg = inkt.write_config(d, text, "rls_sketch.yaml")
r = inkt.run([inkt.INKFLOW, "run", cfg])
inkt.check(r.returncode == 0, "example config runs (exit %d)" % r.returncode)
out = inkt.read_jsonl(out_path) if os.path.exists(out_path) else []

with open(DATA) as f:
    rows = [[float(v) for v in row] for row in list(csv.reader(f))[1:]]
X = np.array([row[1:4] for row in rows])
Y = np.array([row[4] for row in rows])
n = len(rows)
inkt.check(len(out) == n, "one output record per day: %d of %d" % (len(out), n))
fields = ("tau", "accepted", "dict", "deff", "gamma_eff", "yhat")
inkt.check(out and all(all(k in o for k in fields) for o in out), "every record has %s" % (fields,))
inkt.check(out and all(np.allclose(o["x"], X[i]) and o["y"] == Y[i] for i, o in enumerate(out)),
           "records keep their x and y, in order")
if len(out) == n:
    dicts = [o["dict"] for o in out]
    taus = [o["tau"] for o in out]
    inkt.check(max(dicts) <= 256, "dict <= max_dict 256 throughout (max %d, last %d)" %
               (max(dicts), dicts[-1]))
    inkt.check(all(0 <= t <= 0.5 + 1e-12 for t in taus),
               "tau in [0, est_scale = 0.5] (max %.4f)" % max(taus))
    inkt.check(out[0]["accepted"] and dicts[0] == 1, "the first day enters the empty dictionary")
    inkt.check(all(o["gamma_eff"] == 0.5 for o in out), "gamma_eff stays 0.5 (cap not reached)")
    inkt.check(5 < out[-1]["deff"] < dicts[-1], "deff %.2f in (5, dict %d)" % (out[-1]["deff"], dicts[-1]))
    # Exact prequential KRR (no intercept, k^T (K + mu I)^{-1} y) with the same
    # kernel and mu: with L = chol(K + mu I), yhat_t = L[t, :t] . (L^{-1} y)[:t].
    K = gauss_kernel(X, X, 4.0)
    L = np.linalg.cholesky(K + 1.0 * np.eye(n))
    w = np.linalg.solve(L, Y)
    exact = np.array([L[t, :t] @ w[:t] for t in range(n)])
    yhat = np.array([o["yhat"] for o in out])
    skip = 50  # the first days are predicted from almost nothing by both
    mse = float(np.mean((yhat[skip:] - Y[skip:]) ** 2))
    mse_exact = float(np.mean((exact[skip:] - Y[skip:]) ** 2))
    var_y = float(np.var(Y[skip:]))
    inkt.check(mse <= 1.2 * mse_exact,
               "prequential MSE of yhat %.3f <= 1.2 x exact prequential KRR %.3f (ratio %.3f)" %
               (mse, mse_exact, mse / mse_exact))
    inkt.check(mse < 0.25 * var_y, "prequential MSE %.3f < 0.25 x var(y) %.3f" % (mse, var_y))

# A cap that binds: max_dict 24, the dictionary never exceeds it and gamma_eff doubles.
small = text.replace("max_dict: 256", "max_dict: 24").replace("out.jsonl", "small.jsonl")
r = inkt.run([inkt.INKFLOW, "run", inkt.write_config(d, small, "small.yaml")])
so = inkt.read_jsonl(os.path.join(d, "small.jsonl")) if r.returncode == 0 else []
inkt.check(len(so) == n and max(o["dict"] for o in so) <= 24,
           "max_dict 24: dict <= 24 on all %d records (max %s)" %
           (len(so), max((o["dict"] for o in so), default=None)))
ge = sorted(set(o["gamma_eff"] for o in so))
inkt.check(len(ge) > 1 and all(math.log2(g / 0.5) == round(math.log2(g / 0.5)) for g in ge) and
           [o["gamma_eff"] for o in so] == sorted(o["gamma_eff"] for o in so),
           "max_dict 24: gamma_eff escalates by doublings, never down: %s" % ge)

# ---------------------------------------------------------------- 2. router service
SERVICE = """
sources:
  api: {type: zmq, socket: router, bind: "%s", reply_from: sketch}
operators:
  sketch:
    type: rls_sketch
    inputs: [api]
    dim: 3
    kernel: {type: gaussian, sigma: 1.5}
    gamma: 0.2
    mu: 0.1
    qbar: 8
    max_dict: 64
    batch: 4
    predict: true
    shrink: %s
    seed: 5
sinks:
  log: {type: file, path: %s, format: jsonl, inputs: [sketch]}
"""


def start_service(shrink, log):
    ep = inkt.endpoint()
    cfg = inkt.write_config(d, SERVICE % (ep, shrink, log), "service-%s.yaml" % shrink)
    return ep, inkt.start([inkt.INKFLOW, "run", cfg])


def target(x):
    return math.sin(x[0]) + 0.5 * math.cos(2 * x[1]) - 0.3 * x[2]


def stop(graph, node="sketch"):
    graph.send_signal(signal.SIGTERM)
    try:
        _, err = graph.communicate(timeout=30)
    except Exception:
        err = b""
    return graph.returncode, inkt.summary_row(err.decode(), node)


rng = np.random.default_rng(11)
pts = rng.uniform(-2, 2, size=(40, 3)).round(3)
ys = [round(target(p) + 0.05 * rng.standard_normal(), 4) for p in pts]

# 2a. The default sketch (shrinking on): queries agree with what the operator
# reports when the same point arrives right after.
ep, graph = start_service("true", "svc.jsonl")
inkt.wait_for(lambda: inkt.query(ep, {"op": "deff"})[0] == 0, timeout=20)
tau_gap, yhat_gap, learned = 0.0, 0.0, []
for i, (p, y) in enumerate(zip(pts, ys)):
    x = [float(v) for v in p]
    rc1, qt = inkt.query(ep, {"op": "tau", "x": x})
    rc2, qp = inkt.query(ep, {"op": "predict", "x": x})
    rc3, a = inkt.query(ep, {"x": x, "y": y})
    if rc1 or rc2 or rc3 or "tau_new" not in qt or "tau" not in a:
        tau_gap = float("inf")
        break
    learned.append(a)
    # The arrival's tau is the score the point would get if it arrived now.
    tau_gap = max(tau_gap, abs(qt["tau_new"] - a["tau"]))
    if i > 0:  # the prequential yhat is the predict query's yhat before learning
        yhat_gap = max(yhat_gap, abs(qp["yhat"] - a["yhat"]))
inkt.check(len(learned) == len(pts) and tau_gap < 1e-12,
           "tau query's tau_new == the arrival's tau for 40 points (max gap %.2g)" % tau_gap)
inkt.check(len(learned) == len(pts) and yhat_gap < 1e-12,
           "predict query's yhat == the arrival's prequential yhat (max gap %.2g)" % yhat_gap)
inkt.check(all(0 < a["tau"] <= 0.5 and a["dict"] <= 64 for a in learned),
           "arrival replies carry tau in (0, 0.5], dict <= 64")

rc, dq = inkt.query(ep, {"op": "dict"})
m = dq.get("dict", -1)
inkt.check(rc == 0 and m == learned[-1]["dict"] and len(dq.get("points", [])) == m and
           len(dq.get("ids", [])) == m and len(dq.get("weights", [])) == m,
           "dict query: %d points, ids, weights (the last arrival reported dict %d)" %
           (m, learned[-1]["dict"]))
ids = dq.get("ids", [])
inkt.check(all(0 <= i < len(pts) for i in ids) and ids == sorted(set(ids)) and
           all(np.allclose(pt, pts[i]) for pt, i in zip(dq.get("points", []), ids)),
           "dict members are stream points at their arrival numbers: %s" % ids)
inkt.check(dq.get("n") == len(pts) and all(
    abs(w - math.sqrt(q / (8 * p))) < 1e-12 for w, q, p in zip(dq["weights"], dq["q"], dq["p"])),
    "n = 40 and weights = sqrt(q / (qbar p))")
rc, dd = inkt.query(ep, {"op": "deff"})
inkt.check(rc == 0 and abs(dd.get("deff", -1) - learned[-1]["deff"]) < 1e-12,
           "deff query == the last arrival's deff %.4f" % learned[-1]["deff"])

# A point just learned: its prediction moves towards its y, its variance drops.
x_new = [0.3, -1.1, 0.7]
rc1, before = inkt.query(ep, {"op": "predict", "x": x_new})
rc2, _ = inkt.query(ep, {"x": x_new, "y": 2.0})
rc3, after = inkt.query(ep, {"op": "predict", "x": x_new})
inkt.check(rc1 == rc2 == rc3 == 0 and after["var"] < before["var"] and
           abs(after["yhat"] - 2.0) < abs(before["yhat"] - 2.0),
           "predict at a point just learned: yhat %.3f -> %.3f (y = 2), var %.4f -> %.4f" %
           (before.get("yhat", 0), after.get("yhat", 0), before.get("var", 0), after.get("var", 0)))

# Bad requests: error replies, the service goes on with its state unchanged.
rc1, e1 = inkt.query(ep, {"op": "tau", "x": [1.0, 2.0]})
rc2, e2 = inkt.query(ep, {"op": "predict", "x": [1.0, 2.0, 3.0, 4.0]})
rc3, e3 = inkt.query(ep, {"x": [1.0, 2.0], "y": 1.0})
rc4, e4 = inkt.query(ep, {"op": "frobnicate"})
inkt.check(rc1 != 0 and "rls_sketch takes 3" in e1.get("error", ""), "tau with 2 values: %s" % e1)
inkt.check(rc2 != 0 and "rls_sketch takes 3" in e2.get("error", ""), "predict with 4 values: %s" % e2)
inkt.check(rc3 != 0 and "rls_sketch takes 3" in e3.get("error", ""), "learn with 2 values: %s" % e3)
inkt.check(rc4 != 0 and "unknown op" in e4.get("error", ""), "unknown op: %s" % e4)
rc, again = inkt.query(ep, {"op": "predict", "x": x_new})
inkt.check(rc == 0 and again.get("yhat") == after.get("yhat") and again.get("n") == len(pts) + 1,
           "after the errors the service answers, state unchanged (n = %s)" % again.get("n"))
code, row = stop(graph)
inkt.check(code == 0, "service exits 0 on SIGTERM")
inkt.check(row is not None and row["rejected"] == 4, "4 rejected requests counted: %s" % row)

# 2b. shrink: false keeps every point with p = 1, so tau and predict are exact:
# tau = est_scale/gamma (k(x,x) - k^T (K + gamma I)^{-1} k), yhat = k^T (K + mu I)^{-1} y,
# var = (k(x,x) - k^T (K + mu I)^{-1} k) / mu (docs/rls_sketch.md, Queries).
ep, graph = start_service("false", "exact.jsonl")
inkt.wait_for(lambda: inkt.query(ep, {"op": "deff"})[0] == 0, timeout=20)
ok = all(inkt.query(ep, {"x": [float(v) for v in p], "y": y})[0] == 0 for p, y in zip(pts, ys))
inkt.check(ok, "40 points learned with shrink: false")
Xs, Ys = pts.astype(float), np.array(ys)
K = gauss_kernel(Xs, Xs, 1.5)
worst = {"tau": 0.0, "yhat": 0.0, "var": 0.0}
probes = [list(pts[7]), list(pts[31]), [0.0, 0.0, 0.0], [1.9, -1.9, 0.5], [5.0, 5.0, 5.0]]
for x in probes:
    x = [float(v) for v in x]
    k = gauss_kernel(np.array([x]), Xs, 1.5)[0]
    tau = 0.5 / 0.2 * (1 - k @ np.linalg.solve(K + 0.2 * np.eye(len(pts)), k))
    sol = np.linalg.solve(K + 0.1 * np.eye(len(pts)), np.column_stack([Ys, k]))
    yhat, var = k @ sol[:, 0], (1 - k @ sol[:, 1]) / 0.1
    rc1, qt = inkt.query(ep, {"op": "tau", "x": x})
    rc2, qp = inkt.query(ep, {"op": "predict", "x": x})
    if rc1 or rc2:
        worst = {"tau": float("inf")}
        break
    worst["tau"] = max(worst["tau"], abs(qt["tau"] - tau) / max(tau, 1e-3))
    worst["yhat"] = max(worst["yhat"], abs(qp["yhat"] - yhat))
    worst["var"] = max(worst["var"], abs(qp["var"] - var) / var)
inkt.check(worst.get("tau", 1) < 1e-8 and worst.get("yhat", 1) < 1e-8 and worst.get("var", 1) < 1e-8,
           "shrink: false, 5 probes (2 stream points, 3 new): tau, yhat, var match exact RLS/KRR "
           "(max rel/abs gaps %s)" % {k: "%.1e" % v for k, v in worst.items()})
rc, dq = inkt.query(ep, {"op": "dict"})
inkt.check(rc == 0 and dq.get("ids") == list(range(len(pts))) and
           all(p == 1 for p in dq.get("p", [])), "shrink: false keeps all 40 points with p = 1")
code, row = stop(graph)
inkt.check(code == 0 and row is not None and row["rejected"] == 0,
           "exact service exits 0, nothing rejected: %s" % row)

# ---------------------------------------------------------------- 3. key_by with a seed
# Two keys fed the same points: with an explicit seed each key still gets its own
# random stream (derived from the seed and the key), so their sampling differs; the
# same config run twice gives the same records.
rng = np.random.default_rng(5)
pts = rng.normal(size=(400, 3))
with open(os.path.join(d, "keyed.jsonl"), "w") as f:
    for p in pts:
        for key in ("a", "b"):
            f.write(json.dumps({"key": key, "x": [float(v) for v in p]}) + "\n")
runs = []
for i in range(2):
    cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: keyed.jsonl, format: jsonl}
operators:
  sk: {type: rls_sketch, inputs: [src], dim: 3, key_by: key, max_keys: 4, seed: 7,
       kernel: {type: gaussian, sigma: 1.0}, gamma: 1.0, qbar: 2, max_dict: 64}
sinks:
  out: {type: file, path: keyed_%d.jsonl, format: jsonl, inputs: [sk]}
""" % i, "keyed_%d.yaml" % i)
    r = inkt.run([inkt.INKFLOW, "run", cfg])
    recs = inkt.read_jsonl(os.path.join(d, "keyed_%d.jsonl" % i)) if r.returncode == 0 else []
    runs.append(recs)
acc = {k: [o["accepted"] for o in runs[0] if o.get("key") == k] for k in ("a", "b")}
inkt.check(len(acc["a"]) == 400 and len(acc["b"]) == 400 and acc["a"] != acc["b"],
           "key_by with seed: 7, same points: the keys sample differently (%d vs %d accepted)"
           % (sum(acc["a"]), sum(acc["b"])))
inkt.check(runs[0] == runs[1] and len(runs[0]) == 800, "the same config twice: the same records")

inkt.finish()

"""End to end: the ecdf outputs users ask for, through the real binary.

- kll `quantiles: [0.5, 0.9, 0.99]` adds q50, q90, q99 to every record, per key,
  each within the KLL rank bound eps(k) of numpy's quantile of that key's
  earlier readings (inverted CDF: q lies between numpy's quantiles at r - eps
  and r + eps); absent on a key's first record.
- `quantile` with a list of r answers them all in one reply, equal to the
  one-r answers.
- `{"op": "keys"}` lists the live keys with their record counts.
- kde without h: the documented default (twice the node spacing), and
  `density` without x returns the whole grid in one reply, equal to the
  Laplacian KDE computed here at every node.
- Every reply is decoded by a strict msgpack decoder that refuses duplicate
  map keys (the quantile reply used to carry "r" twice).
"""
import bisect
import csv
import math
import os
import random

import inkt
import msgpack
import numpy as np
import zmq

d = inkt.tmpdir()
DATA = os.path.join(inkt.ROOT, "data", "sensors-2010.csv")
K = 200
EPS = 2.296 / K ** 0.9723  # the rank bound of docs/ecdf.md
RS = [0.5, 0.9, 0.99]


class Duplicate(Exception):
    pass


def strict_map(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Duplicate("duplicate keys in %r" % keys)
    return dict(pairs)


ctx = zmq.Context()
replies = []


def ask(ep, req):
    """One request; the reply decoded strictly (duplicate keys raise)."""
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ep)
    s.send(msgpack.packb(req))
    if not s.poll(20000):
        s.close()
        return {"error": "no reply"}
    raw = s.recv()
    s.close()
    try:
        rep = msgpack.unpackb(raw, raw=False, strict_map_key=True, object_pairs_hook=strict_map)
        replies.append((req, None))
    except Duplicate as e:
        replies.append((req, str(e)))
        rep = {"error": "duplicate keys"}
    return rep


rows = []
with open(DATA) as f:
    for r in csv.DictReader(f):
        rows.append((r["key"], float(r["temp"])))
keys = sorted(set(k for k, _ in rows))
count = {k: sum(1 for kk, _ in rows if kk == k) for k in keys}

# --- 1. per-record quantiles against numpy ------------------------------------------
ep = inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: %s}
  api: {type: zmq, socket: router, bind: "%s", reply_from: pct}
operators:
  pct: {type: ecdf, inputs: [src, api], mode: kll, k: %d, quantiles: [0.5, 0.9, 0.99],
        key_by: key, max_keys: 8}
sinks:
  out: {type: file, path: q.jsonl, inputs: [pct]}
""" % (DATA, ep, K))
graph = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.wait_for(lambda: all(ask(ep, {"op": "cdf", "key": k, "x": [50.0]}).get("n") == count[k]
                          for k in keys), timeout=60)
out = os.path.join(d, "q.jsonl")


def data_out():  # the replies to queries also flow to the sink: leave them out
    return [r for r in inkt.read_jsonl(out) if "op" not in r] if os.path.exists(out) else []


inkt.wait_for(lambda: len(data_out()) >= len(rows), timeout=30)
got = data_out()
inkt.check(len(got) == len(rows), "every record out (%d of %d)" % (len(got), len(rows)))
seen = {k: [] for k in keys}
worst, bad, firsts = 0.0, [], 0
for (k, v), rec in zip(rows, got):
    s = seen[k]
    if not s:
        firsts += all(("q%g" % (100 * r)) not in rec for r in RS)
    else:
        arr = np.array(s)
        for r in RS:
            name = "q%g" % (100 * r)
            q = rec.get(name)
            lo, hi = np.quantile(arr, [max(r - EPS, 0.0), min(r + EPS, 1.0)], method="inverted_cdf")
            if q is None or not (lo <= q <= hi):
                bad.append((k, len(s), name, q, lo, hi))
            else:
                # the exact rank interval of q against r
                a, b = bisect.bisect_left(s, q) / len(s), bisect.bisect_right(s, q) / len(s)
                worst = max(worst, a - r, r - b, 0.0)
    bisect.insort(s, v)
inkt.check(firsts == len(keys), "no q fields on a key's first record (%d keys)" % firsts)
inkt.check(not bad, "q50, q90, q99 of %d records within numpy's quantiles at r -+ eps %.4f "
           "(worst rank error %.4f); failures: %s" % (len(rows), EPS, worst, bad[:3]))

# --- 2. quantile with a list of r, scalar r, keys -------------------------------------
for k in keys:
    many = ask(ep, {"op": "quantile", "key": k, "r": [0.1, 0.5, 0.9, 0.99]})
    one = [ask(ep, {"op": "quantile", "key": k, "r": r}) for r in (0.1, 0.5, 0.9, 0.99)]
    inkt.check(many.get("r") == [0.1, 0.5, 0.9, 0.99] and many.get("q") == [o.get("q") for o in one]
               and many.get("n") == count[k],
               "%s: quantile with r = [0.1, 0.5, 0.9, 0.99] equals four one-r replies: %s" % (k, many))
    inkt.check(one[1].get("r") == 0.5 and "q" in one[1], "%s: scalar r reply: %s" % (k, one[1]))
rep = ask(ep, {"op": "quantile", "key": keys[0], "r": [0.5, 1.5]})
inkt.check("r:" in rep.get("error", "") or "needs r" in rep.get("error", ""),
           "an r outside [0, 1] in the list is refused: %s" % rep)
rep = ask(ep, {"op": "quantile", "key": keys[0], "r": []})
inkt.check("error" in rep, "an empty r list is refused: %s" % rep)
rep = ask(ep, {"op": "keys"})
inkt.check(sorted(rep.get("keys", [])) == keys and rep.get("total") == len(keys)
           and {k: c for k, c in zip(rep.get("keys", []), rep.get("counts", []))} == count,
           "keys lists the live keys with their counts: %s" % rep)
rep = ask(ep, {"op": "keys", "limit": 1})
inkt.check(len(rep.get("keys", [])) == 1 and len(rep.get("counts", [])) == 1 and rep.get("total") == 2,
           "keys with limit 1: one key, total 2: %s" % rep)
rep = ask(ep, {"op": "keys", "limit": -1})
inkt.check("error" in rep, "keys with limit -1 refused: %s" % rep)
rep = ask(ep, {"op": "nope", "key": keys[0]})
inkt.check("error" in rep, "an unknown op is an error reply: %s" % rep)
graph.terminate()
graph.wait(timeout=30)

# --- 3. kde: default bandwidth, density over the whole grid --------------------------
rng = random.Random(5)
pts = [(rng.gauss(0, 1), rng.gauss(0.5, 0.7)) for _ in range(1500)]
with open(os.path.join(d, "pts.jsonl"), "w") as f:
    for x0, x1 in pts:
        f.write('{"x": [%r, %r], "y": %r}\n' % (x0, x1, x0 + x1))
ep2 = inkt.endpoint()
cfg2 = inkt.write_config(d, """
sources:
  src: {type: file, path: pts.jsonl}
  api: {type: zmq, socket: router, bind: "%s", reply_from: dens}
operators:
  dens: {type: ecdf, inputs: [src, api], mode: kde, grid: {lo: [-3, -2], hi: [3, 2], n: [31, 11]},
         regression: true}
sinks:
  out: {type: file, path: kde.jsonl, inputs: [dens]}
""" % ep2, "kde.yaml")
v = inkt.run([inkt.INKFLOW, "validate", cfg2])
inkt.check(v.returncode == 0, "kde without h validates: %s" % (v.stdout + v.stderr).decode().strip())
graph = inkt.start([inkt.INKFLOW, "run", cfg2])
inkt.wait_for(lambda: ask(ep2, {"op": "density", "x": [0, 0]}).get("n") == len(pts), timeout=60)
rep = ask(ep2, {"op": "density"})
z0 = [-3 + 6 * i / 30 for i in range(31)]
z1 = [-2 + 4 * j / 10 for j in range(11)]
h0, h1 = 2 * 6 / 30, 2 * 4 / 10  # the default: twice the node spacing


def kde(a, b):
    s = sy = 0.0
    for (x0, x1) in pts:
        w = math.exp(-abs(a - x0) / h0 - abs(b - x1) / h1)
        s += w
        sy += w * (x0 + x1)
    return s / (len(pts) * 4 * h0 * h1), (sy / s if s > 0 else None)


inkt.check(rep.get("shape") == [31, 11] and len(rep.get("density", [])) == 31 * 11
           and len(rep.get("yhat", [])) == 31 * 11 and rep.get("n") == len(pts),
           "density without x: the whole 31 x 11 grid in one reply (keys %s)" % sorted(rep))
inkt.check(all(abs(a - b) < 1e-12 for a, b in zip(rep.get("axis0", []), z0))
           and all(abs(a - b) < 1e-12 for a, b in zip(rep.get("axis1", []), z1)),
           "the reply carries each axis' nodes")
errs = []
for i, a in enumerate(z0):
    for j, b in enumerate(z1):
        want, wy = kde(a, b)
        gotd = rep["density"][i * 11 + j]
        goty = rep["yhat"][i * 11 + j]
        errs.append(abs(gotd - want) / max(want, 1e-300))
        if wy is not None:
            errs.append(abs(goty - wy) / max(abs(wy), 1.0))
inkt.check(max(errs) < 1e-9, "grid density and yhat equal the Laplacian KDE at every node with "
           "h = (%.2f, %.2f) (largest relative error %.2e)" % (h0, h1, max(errs)))
one = ask(ep2, {"op": "density", "x": [0.61, -0.39]})
inkt.check(one.get("node") == [0.6, -0.4] or all(abs(a - b) < 1e-12 for a, b in
                                                 zip(one.get("node", []), [0.6, -0.4])),
           "density at one x still answers its nearest node: %s" % one.get("node"))
i, j = 18, 4  # node (0.6, -0.4)
inkt.check(abs(one.get("density", -1) - rep["density"][i * 11 + j]) < 1e-15,
           "the one-node reply equals the grid's value there")
graph.terminate()
graph.wait(timeout=30)

# kde with one node on an axis and no h: refused at validate
cfg3 = inkt.write_config(d, """
sources:
  src: {type: file, path: pts.jsonl}
operators:
  dens: {type: ecdf, inputs: [src], mode: kde, grid: {lo: [0, 0], hi: [0, 1], n: [1, 5]}}
sinks:
  out: {type: file, path: kde3.jsonl, inputs: [dens]}
""", "kde3.yaml")
v = inkt.run([inkt.INKFLOW, "validate", cfg3])
inkt.check(v.returncode == 2 and b"give h" in v.stderr, "one node on an axis without h: refused (%s)"
           % v.stderr.decode().strip().splitlines()[0])

# --- 4. exact and grid replies decode strictly too ------------------------------------
ep3 = inkt.endpoint()
cfg4 = inkt.write_config(d, """
sources:
  src: {type: file, path: pts.jsonl}
  api: {type: zmq, socket: router, bind: "%s", reply_from: win}
operators:
  win: {type: ecdf, inputs: [src, api], mode: exact, dim: 2, window: 100000}
sinks:
  out: {type: file, path: ex.jsonl, inputs: [win]}
""" % ep3, "exact.yaml")
graph = inkt.start([inkt.INKFLOW, "run", cfg4])
inkt.wait_for(lambda: ask(ep3, {"op": "cdf", "x": [9, 9]}).get("n") == len(pts), timeout=60)
rep = ask(ep3, {"op": "cdf", "points": [[0, 0], [1, 1]], "F": 3, "n": "x"})
inkt.check(len(rep.get("F", [])) == 2 and rep.get("n") == len(pts),
           "a request carrying F and n gets the operator's F and n, once each: %s" % rep)
graph.terminate()
graph.wait(timeout=30)

dups = [(q, e) for q, e in replies if e]
inkt.check(len(replies) > 20 and not dups, "%d replies decoded with a strict decoder (no duplicate "
           "map keys): %s" % (len(replies), dups[:2]))
inkt.finish()

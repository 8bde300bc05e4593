"""End to end: operators flush at the natural end of a graph (engine/op.h
`flush`), shown with ecdf `mode: exact`, whose last, partial window used to be
dropped. The real binary, files, and ZeroMQ on 127.0.0.1 (free ports).

- file -> ecdf exact (window 4) -> file, 10 records: all 10 come out (4 + 4 + 2),
  the last two with n = 2 and F counted here over those two; `emit_partial:
  false` gives the 8 of the full windows; the summary counts the flushed
  records in the node's `out`.
- key_by: every key's partial window comes out with its key and its own n and F,
  keys flushed most recently used first; a key evicted by on_new_key: evict is
  flushed first (its records come out with its key).
- topological order: an exact ecdf fed by another, listed before it in the
  config, still sees the upstream flush before its own (10 records out, not 8).
- zmq pull with stop_after_eos, over tcp and over ipc: `inkflow send` ends the
  stream, the graph ends by itself and flushes.
- SIGTERM is not an end of stream: nothing is flushed (8 records), the partial
  window is in the snapshot; `--restore` and an empty stream then end the graph
  naturally, and the 2 held points come out exactly once."""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402

d = inkt.tmpdir()


def ecdf_of(points):
    """Exact ECDF of each point among `points` (self and ties included), 1-D."""
    return [sum(1 for q in points if q <= p) / len(points) for p in points]


def windows(xs, w):
    """Expected (x, F, n) per output record: tumbling windows of w, the last partial."""
    out = []
    for s in range(0, len(xs), w):
        part = xs[s:s + w]
        out += [(x, f, len(part)) for x, f in zip(part, ecdf_of(part))]
    return out


def got_of(recs):
    return [(r["x"][0], r["F"], r["n"]) for r in recs]


def ran(p, what):
    """The run exited 0; its stderr's tail is shown only when it did not."""
    tail = "" if p.returncode == 0 else ": " + p.stderr.decode()[-400:]
    inkt.check(p.returncode == 0, "%s exits 0 (rc %d%s)" % (what, p.returncode, tail))
    return p.stderr.decode()


def wait_graph(g, timeout=30):
    """(returncode, stderr) of a started graph; killed (rc None) if it does not end."""
    try:
        _, e = g.communicate(timeout=timeout)
    except Exception:
        os.killpg(g.pid, signal.SIGKILL)
        _, e = g.communicate()
        return None, e.decode()
    return g.returncode, e.decode()


def held(snap, node):
    """`cnt` (points in the pending window) of an unkeyed exact ecdf in a snapshot
    (docs/state.md: 32-byte header, payload length at 24, one msgpack map)."""
    with open(snap, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[24:32], "little")
    payload = msgpack.unpackb(b[32:32 + n], raw=False, strict_map_key=False)
    for nd in payload["nodes"]:
        if nd["name"] == node:
            return nd["state"]["cnt"]
    return None


def load(name):
    p = os.path.join(d, name)
    return inkt.read_jsonl(p) if os.path.exists(p) else []


# --- 1. file -> exact, window 4, 10 records ------------------------------------------
XS = [3.0, 1.0, 2.0, 5.0, 4.0, 1.0, 2.0, 9.0, 0.5, 0.25]
with open(os.path.join(d, "in.jsonl"), "w") as f:
    for i, x in enumerate(XS):
        r = {"x": [x], "t": 1000 + i}
        if i % 2:
            r["y"] = i * 0.5
        f.write(json.dumps(r) + "\n")
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: in.jsonl}
operators:
  e:   {type: ecdf, inputs: [src], mode: exact, dim: 1, window: 4}
  off: {type: ecdf, inputs: [src], mode: exact, dim: 1, window: 4, emit_partial: false}
sinks:
  out:  {type: file, path: out.jsonl, format: jsonl, inputs: [e]}
  out2: {type: file, path: off.jsonl, format: jsonl, inputs: [off]}
""", "plain.yaml")
err = ran(inkt.run([inkt.INKFLOW, "run", cfg]), "file graph")
got = load("out.jsonl")
want = windows(XS, 4)
inkt.check(len(got) == 10, "all 10 points come out (4 + 4 + 2): %d" % len(got))
inkt.check(got_of(got) == want, "x, F, n of every record equal the exact windows, the last "
           "two with n = 2: %s" % got_of(got)[-2:])
inkt.check(got_of(got)[-2:] == [(0.5, 1.0, 2), (0.25, 0.5, 2)],
           "the partial window by hand: F = 1 and 1/2, n = 2")
inkt.check([r.get("t") for r in got] == [1000 + i for i in range(10)] and
           [r.get("y") for r in got] == [i * 0.5 if i % 2 else None for i in range(10)],
           "flushed records keep their t and y, in arrival order")
row = inkt.summary_row(err, "e")
inkt.check(row is not None and row["in"] == 10 and row["out"] == 10 and row["rejected"] == 0,
           "summary: e in 10, out 10 (the flushed records counted): %s" % row)
off = load("off.jsonl")
inkt.check(got_of(off) == want[:8], "emit_partial: false: the 8 records of the full windows "
           "only (%d)" % len(off))
row = inkt.summary_row(err, "off")
inkt.check(row is not None and row["out"] == 8, "summary: off out 8: %s" % row)

# --- 2. key_by: each key's partial window, with its key --------------------------------
KEYED = [("a", 1), ("b", 5), ("a", 2), ("c", 7), ("a", 0), ("b", 4), ("a", 3), ("b", 6),
         ("a", 9), ("c", 1), ("b", 2), ("a", 8), ("b", 2), ("c", 3), ("a", 4)]
with open(os.path.join(d, "keyed.jsonl"), "w") as f:
    for k, x in KEYED:
        f.write(json.dumps({"key": k, "x": [float(x)]}) + "\n")
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: keyed.jsonl}
operators:
  e: {type: ecdf, inputs: [src], mode: exact, dim: 1, window: 4, key_by: key, max_keys: 8}
sinks:
  out: {type: file, path: keyed_out.jsonl, format: jsonl, inputs: [e]}
""", "keyed.yaml")
ran(inkt.run([inkt.INKFLOW, "run", cfg]), "keyed graph")
got = load("keyed_out.jsonl")
inkt.check(len(got) == len(KEYED) and all("key" in r for r in got),
           "all %d records come out, every one with a key (%d)" % (len(KEYED), len(got)))
for k in "abc":
    xs = [float(x) for kk, x in KEYED if kk == k]
    mine = [r for r in got if r.get("key") == k]
    inkt.check(got_of(mine) == windows(xs, 4),
               "key %s: %d points, windows of 4 then a partial of %d with that n and F" %
               (k, len(xs), len(xs) % 4))
# The stream's last records are a, c, b: the keys are flushed in that order (most
# recently used first), a's partial window of 3, then c's 3, then b's 1.
flushed = [(r["key"], r["n"]) for r in got if r["n"] < 4]
inkt.check([k for k, _ in flushed] == ["a"] * 3 + ["c"] * 3 + ["b"] * 1,
           "keys flushed most recently used first (a, c, b): %s" % flushed)

# --- 2b. on_new_key: evict flushes the evicted key's window first ----------------------
# max_keys 1: every change of key evicts the other key's state, whose window (3, then 2
# points) goes out first with that key; the last one at the end of the stream.
EV = [("a", 3), ("a", 1), ("a", 2), ("b", 5), ("b", 4), ("a", 7)]
with open(os.path.join(d, "evict.jsonl"), "w") as f:
    for k, x in EV:
        f.write(json.dumps({"key": k, "x": [float(x)]}) + "\n")
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: evict.jsonl}
operators:
  e: {type: ecdf, inputs: [src], mode: exact, dim: 1, window: 4, key_by: key, max_keys: 1,
      on_new_key: evict}
sinks:
  out: {type: file, path: evict_out.jsonl, format: jsonl, inputs: [e]}
""", "evict.yaml")
err = ran(inkt.run([inkt.INKFLOW, "run", cfg]), "evicting graph")
got = load("evict_out.jsonl")
want_ev = ([("a",) + w for w in windows([3.0, 1.0, 2.0], 4)] +
           [("b",) + w for w in windows([5.0, 4.0], 4)] + [("a", 7.0, 1.0, 1)])
inkt.check([(r.get("key"), r["x"][0], r["F"], r["n"]) for r in got] == want_ev,
           "evict: a's 3 points (F 1, 1/3, 2/3), then b's 2, then a's 1, each with its key: %s"
           % [(r.get("key"), r["F"], r["n"]) for r in got])
row = inkt.summary_row(err, "e")
inkt.check(row is not None and row["out"] == len(EV), "summary: e out %d: %s" % (len(EV), row))

# --- 3. topological order, whatever the config order --------------------------------
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: in.jsonl}
operators:
  down: {type: ecdf, inputs: [up], mode: exact, dim: 1, window: 3}
  up:   {type: ecdf, inputs: [src], mode: exact, dim: 1, window: 4}
sinks:
  out: {type: file, path: chain.jsonl, format: jsonl, inputs: [down]}
""", "chain.yaml")
ran(inkt.run([inkt.INKFLOW, "run", cfg]), "chained graph")
got = load("chain.jsonl")
inkt.check(got_of(got) == windows(XS, 3), "down (listed first) gets up's flushed 2 before its "
           "own flush: 3 + 3 + 3 + 1 records (%s)" % [r["n"] for r in got])

# --- 4. zmq pull that stops after end of stream: a natural end ---------------------------
# tcp on 127.0.0.1, then ipc:// (whose end-of-stream ack was once refused: libzmq gives
# ipc peers an address too, which the tcp-only host check took for a tcp host)
for ep in (inkt.endpoint(), "ipc://%s/flush-in.sock" % d):
    cfg = inkt.write_config(d, """
sources:
  src: {type: zmq, socket: pull, bind: "%s", stop_after_eos: 1}
operators:
  e: {type: ecdf, inputs: [src], mode: exact, dim: 1, window: 4}
sinks:
  out: {type: file, path: zmq_out.jsonl, format: jsonl, inputs: [e]}
""" % ep, "zmq.yaml")
    graph = inkt.start([inkt.INKFLOW, "run", cfg])
    s = inkt.run([inkt.INKFLOW, "send", ep, os.path.join(d, "in.jsonl")], timeout=60)
    inkt.check(s.returncode == 0, "%s: send exits 0, end of stream acknowledged (%s)" %
               (ep[:3], s.stderr.decode().strip()))
    rc, _ = wait_graph(graph)
    inkt.check(rc == 0, "%s: the graph ends by itself after the end of stream (rc %s)" %
               (ep[:3], rc))
    got = load("zmq_out.jsonl")
    inkt.check(got_of(got) == want, "%s: zmq with stop_after_eos: all 10 points, the last two "
               "with n = 2 (%d)" % (ep[:3], len(got)))

# --- 5. SIGTERM flushes nothing; the snapshot keeps the window; a natural end later -----
ep = inkt.endpoint()
os.makedirs(os.path.join(d, "snap"))
cfg = inkt.write_config(d, """
engine:
  snapshot: {dir: snap, every: 0}
sources:
  src: {type: zmq, socket: pull, bind: "%s", stop_after_eos: 1}
operators:
  e: {type: ecdf, inputs: [src], mode: exact, dim: 1, window: 4}
  pass: {type: passthrough, inputs: [src]}
sinks:
  out: {type: file, path: sig_out.jsonl, format: jsonl, inputs: [e]}
  seen: {type: file, path: seen.jsonl, format: jsonl, inputs: [pass]}
""" % ep, "sig.yaml")
graph = inkt.start([inkt.INKFLOW, "run", cfg])
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.setsockopt(zmq.LINGER, 5000)
push.connect(ep)
for x in XS:  # no end-of-stream marker: the source does not end
    push.send(msgpack.packb({"x": [x]}))


def lines(name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())


# every record read (the passthrough shows it), the two full windows written
inkt.check(inkt.wait_for(lambda: lines("seen.jsonl") >= 10 and lines("sig_out.jsonl") >= 8,
                         timeout=30), "all 10 records read, the two full windows written")
push.close()
ctx.term()
graph.send_signal(signal.SIGTERM)
rc, err = wait_graph(graph)
inkt.check(rc == 0, "SIGTERM: exit 0 (rc %s)" % rc)
got = load("sig_out.jsonl")
inkt.check(got_of(got) == want[:8], "SIGTERM: only the full windows, no flush (%d records)" %
           len(got))
row = inkt.summary_row(err, "e")
inkt.check(row is not None and row["in"] == 10 and row["out"] == 8,
           "SIGTERM: e read 10, emitted 8: %s" % row)
snap = os.path.join(d, "snap", "sig.snap")
inkt.check(os.path.exists(snap) and held(snap, "e") == 2,
           "SIGTERM wrote the snapshot, the 2 points of the partial window in it (cnt %s)" %
           (held(snap, "e") if os.path.exists(snap) else "-"))
# Resume: the 2 held points are in the restored state; an empty stream ends the graph
# (--eos true: with nothing sent, `auto` cannot learn that the receiver is inkflow).
graph = inkt.start([inkt.INKFLOW, "run", cfg, "--restore"])
empty = os.path.join(d, "empty.jsonl")
open(empty, "w").close()
s = inkt.run([inkt.INKFLOW, "send", ep, empty, "--eos", "true"], timeout=60)
inkt.check(s.returncode == 0, "empty send exits 0 (%s)" % s.stderr.decode().strip())
rc, err = wait_graph(graph)
inkt.check(rc == 0, "restored graph ends by itself (rc %s%s)" % (rc, "" if rc == 0 else ": " +
                                                                  err[-400:]))
got = load("sig_out.jsonl")
inkt.check(got_of(got) == want, "after --restore and the end of stream: the 2 held points "
           "come out once, n = 2 (%d records in all)" % len(got))
# The final snapshot is taken after the flush: it holds the emptied window (so a zmq
# sink would not get the tail twice), and restoring it adds nothing.
inkt.check(held(snap, "e") == 0, "the natural end's snapshot holds the flushed window: cnt %s" %
           held(snap, "e"))
graph = inkt.start([inkt.INKFLOW, "run", cfg, "--restore"])
s = inkt.run([inkt.INKFLOW, "send", ep, empty, "--eos", "true"], timeout=60)
rc, _ = wait_graph(graph)
inkt.check(s.returncode == 0 and rc == 0 and got_of(load("sig_out.jsonl")) == want,
           "restoring the natural end's snapshot flushes nothing twice (%d records)" %
           len(load("sig_out.jsonl")))
inkt.finish()

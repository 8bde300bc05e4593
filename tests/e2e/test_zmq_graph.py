"""End to end over real ZeroMQ sockets on 127.0.0.1: 100,000 records from
`inkflow send` through a running graph to `inkflow recv`, none lost, order
kept; garbage interleaved with valid frames is rejected and counted while
every valid record arrives; SIGTERM drains and exits 0; router requests."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402

d = inkt.tmpdir()
N = 100000
src = os.path.join(d, "in.jsonl")
with open(src, "w") as f:
    for i in range(N):
        f.write(json.dumps({"x": [i * 0.5, -i, 3.25, 1e-3 * i, 0, 1, 2, 3], "i": i}) + "\n")

e_in, e_out = inkt.endpoint(), inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "%s"}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [pass]}
""" % (e_in, e_out))
graph = inkt.start([inkt.INKFLOW, "run", cfg])
out_path = os.path.join(d, "out.jsonl")
with open(out_path, "w") as outf:
    recv = inkt.start([inkt.INKFLOW, "recv", e_out, "--count", str(N)], stdout=outf)
    t0 = time.time()
    s = inkt.run([inkt.INKFLOW, "send", e_in, src], timeout=300)
    inkt.check(s.returncode == 0, "send exits 0 with the end of stream acknowledged (%s)" % s.stderr.decode().strip())
    recv.wait(timeout=120)
    el = time.time() - t0
inkt.check(recv.returncode == 0, "recv got its %d records and exited 0" % N)
got = inkt.read_jsonl(out_path)
inkt.check(len(got) == N, "all %d records arrived (%d) in %.1f s" % (N, len(got), el))
inkt.check([r["i"] for r in got] == list(range(N)), "order kept")
inkt.check(all(r["x"][0] == r["i"] * 0.5 for r in got), "payload intact")
inkt.check("t" in got[0], "the zmq source stamped arrival time t")

# --- SIGTERM drains and exits 0 with a summary ------------------------------------
t0 = time.time()
graph.send_signal(signal.SIGTERM)
try:
    graph.wait(timeout=10)
except Exception:
    pass
err = graph.stderr.read().decode()
inkt.check(graph.returncode == 0, "SIGTERM: exit 0 within %.1f s (rc=%s)" % (time.time() - t0, graph.returncode))
row = inkt.summary_row(err, "pass")
inkt.check(row is not None and row["in"] == N and row["out"] == N, "summary: pass in/out = %s" % row)

# --- garbage interleaved with valid frames, dead-lettered ---------------------------
e_in, e_out = inkt.endpoint(), inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "%s", max_message_bytes: 4KiB, dead_letter: bad}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [pass]}
  bad: {type: file, path: dead.jsonl}   # only dead letters
""" % (e_in, e_out), "garbage.yaml")
graph = inkt.start([inkt.INKFLOW, "run", cfg])
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.setsockopt(zmq.LINGER, 5000)
push.connect(e_in)
pull = ctx.socket(zmq.PULL)
pull.connect(e_out)
garbage = [
    b"",                                        # empty frame
    b"\xc1",                                    # reserved byte
    b"\x93\x01\x02\x03",                        # array, not a map
    b"\x81\xa1x\xdd\xff\xff\xff\xff",           # x declared 2^32-1 long in 8 bytes
    b"\x81\xa1x\x91\xcb" + b"\x7f\xf8" + b"\0" * 6,  # x = [NaN]
    msgpack.packb({"x": ["a", "b"]}),           # strings where numbers belong
    msgpack.packb({"x": [1.0], "y": "high"}),   # y of the wrong type
    b"\x81" * 100 + b"\xc0",                    # 100-deep nesting
    msgpack.packb({"x": [0.0] * 600}),          # over 4 KiB
    b"\x82\xa1x\x91\x01",                       # truncated map
]
valid = 0
sent_garbage = 0
for i in range(2000):
    push.send(msgpack.packb({"x": [float(i), 2.0], "i": i}))
    valid += 1
    if i % 10 == 0:
        push.send(garbage[(i // 10) % len(garbage)])
        sent_garbage += 1
got = []
poller = zmq.Poller()
poller.register(pull, zmq.POLLIN)
deadline = time.time() + 30
while len(got) < valid and time.time() < deadline:
    if poller.poll(200):
        got.append(msgpack.unpackb(pull.recv(), raw=False))
inkt.check([r["i"] for r in got] == list(range(valid)), "every valid record arrived in order among garbage (%d/%d)" % (len(got), valid))
graph.send_signal(signal.SIGTERM)
graph.wait(timeout=15)
err = graph.stderr.read().decode()
inkt.check(graph.returncode == 0, "exit 0 after garbage")
row = inkt.summary_row(err, "feed")
inkt.check(row is not None and row["rejected"] == sent_garbage, "all %d garbage frames rejected and counted: %s" % (sent_garbage, row))
why = row["why"] if row else {}
for reason in ("decode", "not_map", "truncated", "nonfinite", "type", "depth", "too_large"):
    inkt.check(why.get(reason, 0) > 0, "reason %s counted (%d)" % (reason, why.get(reason, 0)))
dead = inkt.read_jsonl(os.path.join(d, "dead.jsonl"))
inkt.check(len(dead) == sent_garbage and all("_reject" in r for r in dead), "dead letters written with their reason (%d)" % len(dead))
push.close(0)
pull.close(0)

# --- router: a request gets a reply; a bad request gets an error reply ----------------------
e_req = inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  svc: {type: zmq, socket: router, bind: "%s", reply_from: pass}
operators:
  pass: {type: passthrough, inputs: [svc]}
sinks:
  log: {type: file, path: log.jsonl, inputs: [pass]}
""" % e_req, "router.yaml")
graph = inkt.start([inkt.INKFLOW, "run", cfg])
q = inkt.run([inkt.INKFLOW, "query", e_req, '{"x": [1, 2], "tag": "hello"}'])
reply = json.loads(q.stdout.decode() or "{}")
inkt.check(q.returncode == 0 and reply.get("x") == [1, 2] and reply.get("tag") == "hello", "router reply: %s" % reply)
req = ctx.socket(zmq.REQ)
req.setsockopt(zmq.LINGER, 0)
req.connect(e_req)
req.send(b"\xc1")
bad = msgpack.unpackb(req.recv(), raw=False) if req.poll(5000) else {}
inkt.check("error" in bad, "a malformed request gets an error reply: %s" % bad)
req.send(msgpack.packb({"x": [3.0]}))
ok = msgpack.unpackb(req.recv(), raw=False) if req.poll(5000) else {}
inkt.check(ok.get("x") == [3.0], "and the service goes on")
req.close(0)
graph.send_signal(signal.SIGTERM)
graph.wait(timeout=15)
inkt.check(graph.returncode == 0, "router graph exits 0 on SIGTERM")
ctx.term()
inkt.finish()

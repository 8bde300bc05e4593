"""ZeroMQ peers that are not inkflow, and peers that simply leave.

- Disconnects: `inkflow query` clients and a pyzmq REQ that connect, ask
  and leave are counted (/metrics `disconnected`) but write no log line; a
  frame over the socket's cap (4 x max_message_bytes) makes libzmq drop that
  connection, which is counted as `dropped` too and logged with the cap.
- End of stream only where it is understood (`eos: auto`, the default): a
  plain pyzmq PULL consumer reads a push sink, and `inkflow send`, to the end
  with a strict decoder and sees no frame that is not a record; the graph
  exits by itself within 4 s (at most the 1 s hello window; it used to wait
  the 5 s eos_timeout for an acknowledgement that never came), on SIGINT
  within 3 s, and `inkflow send` exits 0 within 4 s (it waited 10 s, exit 1); two `inkflow recv` receivers of one push
  sink both get the marker and acknowledge, and end by themselves.
"""
import os
import signal
import threading
import time

import inkt
import msgpack
import zmq
from inkprom import get, scrape, value

B = inkt.INKFLOW
d = inkt.tmpdir()
ctx = zmq.Context()


def conn_count(port, node, event):
    fams = scrape(port)
    v = fams and value(fams, "inkflow_connections", "inkflow_connections_total", node=node,
                       event=event)
    return v or 0


def read(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


# --- 1. normal disconnects are quiet, drops are logged ----------------------------------
ep = inkt.endpoint()
port = inkt.free_port()
cfg = inkt.write_config(d, """
sources:
  api: {type: zmq, socket: router, bind: "%s", reply_from: pct, max_message_bytes: 1KiB}
operators:
  pct: {type: ecdf, inputs: [api], mode: kll, k: 64}
sinks:
  out: {type: file, path: query.jsonl, inputs: [pct]}
engine: {http: {listen: "127.0.0.1:%d"}}
""" % (ep, port), name="query.yaml")
errpath = os.path.join(d, "query.err")
g = inkt.start([B, "run", cfg], stderr=open(errpath, "wb"))
inkt.check(inkt.wait_for(lambda: get(port, "/health")[0] == 200, timeout=30), "graph up")
N = 5
for i in range(N):
    rc, rep = inkt.query(ep, {"x": [float(i)]})
    inkt.check(rc == 0 and rep, "query %d answered: %s" % (i, rep))
s = ctx.socket(zmq.REQ)
s.setsockopt(zmq.LINGER, 0)
s.connect(ep)
s.send(msgpack.packb({"x": [9.0]}))
inkt.check(s.poll(20000) != 0, "a pyzmq REQ gets its reply")
s.recv()
s.close()
inkt.check(inkt.wait_for(lambda: conn_count(port, "api", "disconnected") >= N + 1, timeout=30),
           "every client that left is counted as disconnected (%s)"
           % conn_count(port, "api", "disconnected"))
err = read(errpath)
inkt.check("connection from" not in err and "closed" not in err and "dropped" not in err,
           "no log line for clients that connected, asked and left: %r" % err[-2000:])
inkt.check(conn_count(port, "api", "dropped") == 0, "none counted as dropped")

# a frame over 4 x 1 KiB: libzmq drops the connection; counted and logged
big = ctx.socket(zmq.REQ)
big.setsockopt(zmq.LINGER, 0)
big.connect(ep)
big.send(b"\x81\xa1x\xc4" + b"\0" * (8 * 1024))
inkt.check(inkt.wait_for(lambda: conn_count(port, "api", "dropped") >= 1, timeout=30),
           "a frame over the socket's cap: the connection counted as dropped")
big.close()
inkt.check(inkt.wait_for(lambda: "dropped the connection from 127.0.0.1" in read(errpath),
                         timeout=10), "the drop is logged with the peer address")
inkt.check("over the socket's cap of 4096 bytes" in read(errpath), "and with the cap")
g.send_signal(signal.SIGTERM)
g.wait(timeout=30)
err = read(errpath)
inkt.check(g.returncode == 0, "graph exit 0")
inkt.check("dropped by the socket)" in err, "the exit summary counts the drop: %s"
           % [ln for ln in err.splitlines() if "connections:" in ln])


# --- 2. plain consumers get records only ---------------------------------------------
class Plain:
    """A plain PULL consumer: every message must be one frame holding exactly one
    msgpack map (msgpack.unpackb raises ExtraData otherwise); reads until `quiet`
    seconds pass without a message after at least `want` records."""

    def __init__(self, ep, want, bind=False, quiet=1.5):
        self.s = ctx.socket(zmq.PULL)
        self.s.setsockopt(zmq.LINGER, 0)
        (self.s.bind if bind else self.s.connect)(ep)
        self.want, self.quiet, self.got, self.errors = want, quiet, [], []
        self.t = threading.Thread(target=self.run)
        self.t.start()

    def run(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            if not self.s.poll(int(self.quiet * 1000)):
                if len(self.got) >= self.want:
                    break
                continue
            frames = self.s.recv_multipart()
            try:
                if len(frames) != 1:
                    raise ValueError("a message of %d frames: %r" % (len(frames), frames[:2]))
                rec = msgpack.unpackb(frames[0], raw=False)
                if not isinstance(rec, dict):
                    raise ValueError("not a map: %r" % (rec,))
                self.got.append(rec)
            except Exception as e:  # ExtraData, the marker's frames, ...
                self.errors.append(repr(e))
        self.s.close()

    def join(self):
        self.t.join(timeout=90)
        return self.got, self.errors


N = 50
data = os.path.join(d, "in.jsonl")
with open(data, "w") as f:
    for i in range(N):
        f.write('{"x": [%d.0], "y": %d}\n' % (i, i))

# a graph that ends by itself: file -> passthrough -> push sink (bound), eos: auto
ep = inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: %s}
operators:
  p: {type: passthrough, inputs: [src]}
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [p]}
""" % (data, ep), name="push_end.yaml")
t0 = time.time()
g = inkt.start([B, "run", cfg])
consumer = Plain(ep, N)
rc = None
try:
    rc = g.wait(timeout=30)
except Exception:
    pass
took = time.time() - t0
err = g.stderr.read().decode(errors="replace")
got, errors = consumer.join()
inkt.check(len(got) == N and [r.get("y") for r in got] == list(range(N)) and not errors,
           "plain PULL consumer: all %d records of the sink, nothing else (%d, errors %s)"
           % (N, len(got), errors[:2]))
inkt.check(rc == 0 and took < 4.0, "the graph ended by itself within 4 s (rc %s, %.2f s): %s"
           % (rc, took, err[-600:]))
inkt.check("end of stream not sent" in err and "acknowledg" not in err,
           "its log says the marker was not sent, and waits for no acknowledgement")

# a graph stopped by SIGINT: zmq pull source -> push sink, a plain consumer
e_in, e_out = inkt.endpoint(), inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  src: {type: zmq, socket: pull, bind: "%s"}
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [src]}
""" % (e_in, e_out), name="push_int.yaml")
g = inkt.start([B, "run", cfg])
consumer = Plain(e_out, 10)
feed = ctx.socket(zmq.PUSH)
feed.setsockopt(zmq.LINGER, 2000)
feed.connect(e_in)
for i in range(10):
    feed.send(msgpack.packb({"x": [float(i)], "y": i}))
inkt.check(inkt.wait_for(lambda: len(consumer.got) >= 10, timeout=30), "10 records through")
feed.close()
t0 = time.time()
g.send_signal(signal.SIGINT)
try:
    rc = g.wait(timeout=30)
except Exception:
    rc = None
took = time.time() - t0
got, errors = consumer.join()
inkt.check(rc == 0 and took < 3.0, "SIGINT: exit 0 within 3 s (rc %s, %.2f s)" % (rc, took))
inkt.check(len(got) == 10 and not errors, "the plain consumer saw records only (%d, %s)"
           % (len(got), errors[:2]))

# inkflow send to a plain consumer
ep = inkt.endpoint()
consumer = Plain(ep, N, bind=True)
t0 = time.time()
s = inkt.run([B, "send", ep, data], timeout=60)
took = time.time() - t0
got, errors = consumer.join()
serr = s.stderr.decode()
inkt.check(s.returncode == 0 and took < 4.0, "inkflow send to a plain consumer: exit 0 within "
           "4 s (rc %d, %.2f s): %s" % (s.returncode, took, serr.strip()))
inkt.check(len(got) == N and not errors, "the plain consumer read %d records, nothing else "
           "(%d, %s)" % (N, len(got), errors[:2]))
inkt.check("end of stream not sent" in serr, "send says it sent no end of stream")
r = inkt.run([B, "send", ep, data, "--eos", "maybe"])
inkt.check(r.returncode == 2 and b"--eos" in r.stderr, "send --eos maybe: refused, exit 2")
bad = inkt.write_config(d, """
sources:
  src: {type: file, path: %s}
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [src], eos: maybe}
""" % (data, ep), name="bad_eos.yaml")
r = inkt.run([B, "validate", bad])
inkt.check(r.returncode == 2 and b"auto, true, false" in r.stderr,
           "eos: maybe is a config error naming the choices: %s" % r.stderr.decode().strip())

# --- 3. inkflow -> inkflow: two receivers of one push sink both end ---------------------
e_in, e_out = inkt.endpoint(), inkt.endpoint()
port = inkt.free_port()
cfg = inkt.write_config(d, """
sources:
  src: {type: zmq, socket: pull, bind: "%s", stop_after_eos: 1}
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [src]}
engine: {http: {listen: "127.0.0.1:%d"}}
""" % (e_in, e_out, port), name="push_two.yaml")
g = inkt.start([B, "run", cfg])
inkt.check(inkt.wait_for(lambda: get(port, "/health")[0] == 200, timeout=30), "graph up")
r1 = inkt.start([B, "recv", e_out, "--timeout", "60"])
r2 = inkt.start([B, "recv", e_out, "--timeout", "60"])
inkt.check(inkt.wait_for(lambda: conn_count(port, "out", "admitted") >= 2, timeout=30),
           "both receivers connected")
s = inkt.run([B, "send", e_in, data], timeout=60)
inkt.check(s.returncode == 0 and b"acknowledged" in s.stderr,
           "send -> graph: acknowledged (%s)" % s.stderr.decode().strip())
outs = []
for r in (r1, r2):
    try:
        o, e = r.communicate(timeout=30)
    except Exception:
        o, e = b"", b"timeout"
    outs.append((r.returncode, o.decode().splitlines(), e.decode()))
inkt.check(all(rc == 0 for rc, _, _ in outs),
           "each inkflow recv ended by itself at the end of stream: %s"
           % [(rc, e[-200:]) for rc, _, e in outs])
ys = sorted(json_y for _, lines, _ in outs for json_y in
            (int(round(float(ln.split('"y":')[1].split(",")[0].rstrip("}")))) for ln in lines))
inkt.check(ys == list(range(N)) and all(len(lines) > 0 for _, lines, _ in outs),
           "the %d records split over both receivers, none lost (%s)"
           % (N, [len(lines) for _, lines, _ in outs]))
try:
    rc = g.wait(timeout=30)
except Exception:
    rc = None
err = g.stderr.read().decode(errors="replace")
inkt.check(rc == 0 and "not sent" not in err and "acknowledg" not in err,
           "the graph ended, both receivers acknowledged its end of stream: %s" % err[-600:])

inkt.finish()

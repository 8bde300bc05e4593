"""ZeroMQ peers that are not inkflow, and peers that simply leave.

- Disconnects: `inkflow query` clients and a pyzmq REQ that connect, ask
  and leave are counted (/metrics `disconnected`) but write no log line; a
  frame over the socket's cap (4 x max_message_bytes) makes libzmq drop that
  connection, which is counted as `dropped` too and logged with the cap.
"""
import os
import signal

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

inkt.finish()

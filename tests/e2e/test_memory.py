"""Memory: RSS of a running passthrough graph is flat (within 5%) from 1M to
10M records. One sender streams 10M records over one connection; the sink
writes one record in 1,000, so its line count tells how far the graph has
got, and RSS is read when it passes 1M and at the end. The sender finishes
with the end-of-stream exchange, whose acknowledgement means the graph has
handled every record. The receive queue is bounded by `hwm`; a smaller one
keeps its share of RSS (up to hwm queued frames) from depending on how far
the sender got ahead at the moment of the first reading."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402

N = 10000000
d = inkt.tmpdir()
e_in = inkt.endpoint()
sample = os.path.join(d, "sample.jsonl")
cfg = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "%s", hwm: 1000}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: file, path: sample.jsonl, every: 1000, inputs: [pass]}
""" % e_in)
graph = inkt.start([inkt.INKFLOW, "run", cfg])
if inkt.wait_for(lambda: graph.poll() is not None, timeout=0.5):
    inkt.check(False, "graph started: %s" % graph.stderr.read().decode())
    inkt.finish()


def lines():
    try:
        with open(sample, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


blast = inkt.start([os.path.join(inkt.BUILD, "ink_blast"), e_in, str(N), "8", "--eos"])
r1 = None
deadline = time.time() + 300
while blast.poll() is None and time.time() < deadline:
    if r1 is None and lines() >= 1000:  # 1M records through the graph
        r1 = inkt.rss_kib(graph.pid)
    time.sleep(0.02)
inkt.check(blast.poll() == 0, "10M records sent and the end of stream acknowledged")
r10 = inkt.rss_kib(graph.pid)
inkt.check(r1 is not None, "RSS read at 1M records")
r1 = r1 or 1
print("RSS after 1M: %d KiB, after 10M: %d KiB (ratio %.3f)" % (r1, r10, r10 / r1))
inkt.check(r10 <= r1 * 1.05, "RSS flat within 5%% from 1M to 10M records (%d -> %d KiB)" % (r1, r10))
graph.send_signal(signal.SIGTERM)
graph.wait(timeout=15)
err = graph.stderr.read().decode()
row = inkt.summary_row(err, "pass")
inkt.check(row is not None and row["in"] == N, "all 10M records went through: %s" % row)
inkt.check(graph.returncode == 0, "exit 0")
inkt.finish()

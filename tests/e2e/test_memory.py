"""Memory: RSS of a running passthrough graph is flat (within 5%) from 1M to
10M records. Each batch ends with the end-of-stream exchange, whose
acknowledgement means the graph has handled every record before it."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402

d = inkt.tmpdir()
e_in = inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "%s"}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: file, path: /dev/null, format: msgpack, inputs: [pass]}
""" % e_in)
graph = inkt.start([inkt.INKFLOW, "run", cfg])
blast = os.path.join(inkt.BUILD, "ink_blast")


def send(n):
    if graph.poll() is not None:
        return False
    try:
        p = inkt.run([blast, e_in, str(n), "8", "--eos"], timeout=300)
    except Exception as e:  # a hang is a failure, not a stuck suite
        print("ink_blast: %s" % e)
        return False
    return p.returncode == 0


inkt.wait_for(lambda: graph.poll() is not None, timeout=0.5)
if graph.poll() is not None:
    inkt.check(False, "graph started: %s" % graph.stderr.read().decode())
    inkt.finish()
inkt.check(send(1000000), "first 1M records acknowledged")
r1 = inkt.rss_kib(graph.pid)
inkt.check(send(9000000), "9M more records acknowledged")
r10 = inkt.rss_kib(graph.pid)
print("RSS after 1M: %d KiB, after 10M: %d KiB (ratio %.3f)" % (r1, r10, r10 / max(r1, 1)))
inkt.check(r10 <= r1 * 1.05, "RSS flat within 5%% from 1M to 10M records (%d -> %d KiB)" % (r1, r10))
graph.send_signal(signal.SIGTERM)
graph.wait(timeout=15)
err = graph.stderr.read().decode()
row = inkt.summary_row(err, "pass")
inkt.check(row is not None and row["in"] == 10000000, "all 10M records went through: %s" % row)
inkt.check(graph.returncode == 0, "exit 0")
inkt.finish()

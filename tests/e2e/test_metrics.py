"""The metrics and health endpoint (engine.http) through the real binary:
- /metrics parses with the Prometheus text parser (python3-prometheus-client)
  and its counters equal the records actually sent over a real zmq socket:
  valid, garbage (rejected at the source, reason decode) and wrong-dimension
  (rejected at the operator, reason dim); the latency histogram counts every
  call; the operator gauges, the key count and the zmq source's connection
  counters (1 accepted, 1 admitted) are there; snapshots counted;
- /health answers while the graph is still opening its sources, /ready only
  once every source is open and the restore is finished (a FIFO source holds
  the restore back until the test writes into it)."""
import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
from inkprom import get, scrape, value  # noqa: E402

# --- counters against what was sent -------------------------------------------------
d = inkt.tmpdir()
port = inkt.free_port()
e_in = inkt.endpoint()
cfg = inkt.write_config(d, """
engine:
  http: {listen: "127.0.0.1:%d"}
  snapshot: {dir: snap, every: 0.2s}
sources:
  feed: {type: zmq, socket: pull, bind: "%s"}
operators:
  model:
    type: rls_sketch
    inputs: [feed]
    dim: 2
    kernel: {type: gaussian, sigma: 1.0}
    max_dict: 64
  cdf:
    type: ecdf
    inputs: [feed]
    mode: grid
    grid: {lo: [0, 0], hi: [1, 1], n: [8, 8]}
    key_by: key
    max_keys: 4
sinks:
  out: {type: file, path: out.msgpack, inputs: [model, cdf]}
""" % (port, e_in))
os.makedirs(os.path.join(d, "snap"))
t_started = time.time()
g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: get(port, "/ready")[0] == 200, timeout=20),
           "/ready answers 200 once the zmq source is bound")
inkt.check(get(port, "/health") == (200, "ok\n"), "/health answers ok")
inkt.check(get(port, "/nope")[0] == 404, "other paths are 404")

N, GARBAGE, BADDIM = 3000, 7, 5
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.connect(e_in)
for i in range(N):
    push.send(msgpack.packb({"x": [(i % 97) / 97.0, (i % 89) / 89.0], "y": i % 3,
                             "key": "s%d" % (i % 4)}))
    if i % 500 == 0 and i // 500 < GARBAGE:
        push.send(b"\xc1 not msgpack")
for i in range(GARBAGE - 6):
    push.send(b"\xc1")
for i in range(BADDIM):
    push.send(msgpack.packb({"x": [0.1, 0.2, 0.3], "key": "s0"}))
total = N + GARBAGE + BADDIM
fams = None


def settled():
    global fams
    fams = scrape(port)
    return fams is not None and value(fams, "inkflow_records_in", "inkflow_records_in_total",
                                      node="feed") == total


inkt.check(inkt.wait_for(settled, timeout=30), "/metrics parses as Prometheus text and shows all "
           "%d frames in at the source" % total)
if fams:
    v = lambda *a, **k: value(fams, *a, **k)  # noqa: E731
    inkt.check(fams["inkflow_records_in"].type == "counter" and
               fams["inkflow_process_latency_seconds"].type == "histogram",
               "types: counters and a histogram")
    inkt.check(v("inkflow_records_rejected", "inkflow_records_rejected_total", node="feed",
                 reason="decode") == GARBAGE, "source rejected{reason=decode} = %d" % GARBAGE)
    inkt.check(v("inkflow_records_in", "inkflow_records_in_total", node="model") == N + BADDIM and
               v("inkflow_records_out", "inkflow_records_out_total", node="model") == N,
               "model in = %d, out = %d" % (N + BADDIM, N))
    inkt.check(v("inkflow_records_rejected", "inkflow_records_rejected_total", node="model",
                 reason="dim") == BADDIM, "model rejected{reason=dim} = %d" % BADDIM)
    inkt.check(v("inkflow_records_out", "inkflow_records_out_total", node="out") == 2 * N and
               v("inkflow_records_dropped", "inkflow_records_dropped_total", node="out") == 0,
               "sink wrote %d, dropped 0" % (2 * N))
    inkt.check(v("inkflow_process_latency_seconds", "inkflow_process_latency_seconds_count",
                 node="model") == N + BADDIM and
               v("inkflow_process_latency_seconds", "inkflow_process_latency_seconds_bucket",
                 node="model", le="+Inf") == N + BADDIM,
               "latency histogram counts every call (%d)" % (N + BADDIM))
    dict_ = v("inkflow_operator_dict", "inkflow_operator_dict", node="model")
    ge = v("inkflow_operator_gamma_eff", "inkflow_operator_gamma_eff", node="model")
    inkt.check(dict_ is not None and 0 < dict_ <= 64 and ge is not None and ge > 0,
               "rls gauges: dict %s, gamma_eff %s" % (dict_, ge))
    acc = v("inkflow_connections", "inkflow_connections_total", node="feed", event="accepted")
    adm = v("inkflow_connections", "inkflow_connections_total", node="feed", event="admitted")
    ref = v("inkflow_connections", "inkflow_connections_total", node="feed",
            event="refused_auth")
    inkt.check(acc == 1 and adm == 1 and ref == 0,
               "zmq source: 1 connection accepted, 1 admitted, 0 refused (%s, %s, %s)" %
               (acc, adm, ref))
    inkt.check(v("inkflow_operator_keys", "inkflow_operator_keys", node="cdf") == 4 and
               v("inkflow_operator_memory_bound_bytes", "inkflow_operator_memory_bound_bytes",
                 node="cdf") > 0, "keyed ecdf: 4 keys, a memory bound")
    # build and process metrics, against the binary and /proc
    ver = inkt.run([inkt.INKFLOW, "--version"]).stdout.decode().split()
    bi = [smp for f in fams.values() for smp in f.samples if smp.name == "inkflow_build_info"]
    inkt.check(len(bi) == 1 and bi[0].value == 1 and "inkflow %s (commit %s)" % (
        bi[0].labels.get("version"), bi[0].labels.get("commit")) == " ".join(ver),
               "inkflow_build_info{version, commit} matches `inkflow --version` (%s; %s)"
               % (bi[0].labels if bi else None, " ".join(ver)))
    cpu = v("process_cpu_seconds", "process_cpu_seconds_total")
    rss = v("process_resident_memory_bytes", "process_resident_memory_bytes")
    fds = v("process_open_fds", "process_open_fds")
    start = v("process_start_time_seconds", "process_start_time_seconds")
    real_fds = len(os.listdir("/proc/%d/fd" % g.pid))
    inkt.check(cpu is not None and 0 < cpu < 600, "process_cpu_seconds_total %s" % cpu)
    inkt.check(rss is not None and abs(rss / 1024 - inkt.rss_kib(g.pid)) < 0.5 * inkt.rss_kib(g.pid),
               "process_resident_memory_bytes %s near VmRSS %d KiB" % (rss, inkt.rss_kib(g.pid)))
    inkt.check(fds is not None and abs(fds - real_fds) <= 3,
               "process_open_fds %s near /proc/PID/fd's %d" % (fds, real_fds))
    inkt.check(start is not None and abs(start - t_started) < 30,
               "process_start_time_seconds %s within 30 s of the launch (%.0f)" % (start, t_started))


def snapped():
    f = scrape(port)
    return f is not None and (value(f, "inkflow_snapshots", "inkflow_snapshots_total") or 0) >= 1


inkt.check(inkt.wait_for(snapped, timeout=30), "a snapshot is taken")
fams = scrape(port)
snaps = value(fams, "inkflow_snapshots", "inkflow_snapshots_total")
age = value(fams, "inkflow_snapshot_age_seconds", "inkflow_snapshot_age_seconds")
inkt.check(snaps is not None and snaps >= 1 and age is not None and 0 <= age < 5,
           "snapshots counted (%s), age %s s" % (snaps, age))
push.close(0)
ctx.term()
g.terminate()
g.wait(timeout=20)
inkt.check(g.returncode == 0, "SIGTERM: exit 0")

# --- /ready only after the restore ------------------------------------------------------
d = inkt.tmpdir()
port = inkt.free_port()
cfg = inkt.write_config(d, """
engine:
  http: {listen: "127.0.0.1:%d"}
  snapshot: {dir: snap, every: 0}
sources:
  src: {type: file, path: in.msgpack}
operators:
  cdf: {type: ecdf, inputs: [src], mode: kll, k: 64}
sinks:
  out: {type: file, path: out.msgpack, inputs: [cdf]}
""" % port)
os.makedirs(os.path.join(d, "snap"))
first = b"".join(msgpack.packb({"x": [i * 0.01]}) for i in range(1000))
more = b"".join(msgpack.packb({"x": [i * 0.02]}) for i in range(10))
fin = os.path.join(d, "in.msgpack")
with open(fin, "wb") as f:
    f.write(first)
p = inkt.run([inkt.INKFLOW, "run", cfg], timeout=60)
inkt.check(p.returncode == 0, "first run over 1000 records, final snapshot")
os.unlink(fin)
os.mkfifo(fin)  # the restore must read 1000 records through it before it is done
g = inkt.start([inkt.INKFLOW, "run", cfg, "--restore"])
inkt.check(inkt.wait_for(lambda: get(port, "/health")[0] == 200, timeout=20),
           "restoring: /health answers")
states = set()
for _ in range(10):
    states.add(get(port, "/ready")[0])
    time.sleep(0.05)
inkt.check(states == {503}, "restoring (source not yet readable): /ready is 503 (%s)" % states)
w = open(fin, "wb")
w.write(first + more)
w.flush()
inkt.check(inkt.wait_for(lambda: get(port, "/ready")[0] == 200, timeout=20),
           "restore done: /ready is 200")
w.close()
_, err = g.communicate(timeout=20)
inkt.check(g.returncode == 0, "end of the FIFO: exit 0")
row = inkt.summary_row(err.decode(), "src")
inkt.check(row and row["in"] == 1010 and inkt.summary_row(err.decode(), "cdf")["out"] == 1010,
           "the source counts 1000 restored + 10 new records (%s)" % (row and row["in"]))
inkt.finish()

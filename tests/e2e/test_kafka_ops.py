"""Kafka source in operation on the mock cluster (tests/kafka_mock.c), docs/kafka.md:

- bad payloads on the topic are rejected and counted like any other source's (on
  /metrics by reason and in the exit summary), the good ones all come through;
- the broker goes away (mock down): /ready answers 503 and /health names the
  node, the graph waits with its state (the process stays up, nothing is lost);
  the broker comes back: /ready is 200 again, the records produced since come
  through, every record exactly once.
- json and csv topics: good lines decoded, bad ones rejected and counted; kafka
  sinks in json and csv write one record per message, keyed by the record's key.
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inkkafka  # noqa: E402
import inkprom  # noqa: E402
import inkt  # noqa: E402

mock = inkkafka.Mock({"in": 2, "injson": 2, "incsv": 2, "outjson": 2, "outcsv": 2})
d = inkt.tmpdir()
os.makedirs(os.path.join(d, "snap"))
port = inkt.free_port()
cfg = inkt.write_config(d, """
engine:
  snapshot: {dir: snap, every: 1s}
  http: {listen: "127.0.0.1:%d"}
sources:
  feed:
    type: kafka
    brokers: "%s"
    topic: in
    group: g
    options: {session.timeout.ms: 3000, heartbeat.interval.ms: 500,
              reconnect.backoff.max.ms: 500}
  js:
    type: kafka
    brokers: "%s"
    topic: injson
    group: g
    format: json
    options: {session.timeout.ms: 3000, heartbeat.interval.ms: 500,
              reconnect.backoff.max.ms: 500}
  cs:
    type: kafka
    brokers: "%s"
    topic: incsv
    group: g
    format: csv
    csv_header: "key,x0,y"
    options: {session.timeout.ms: 3000, heartbeat.interval.ms: 500}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: file, path: out.jsonl, inputs: [pass]}
  outjs: {type: file, path: outjs.jsonl, inputs: [js]}
  kjs: {type: kafka, brokers: "%s", topic: outjson, format: json, inputs: [js]}
  kcsv: {type: kafka, brokers: "%s", topic: outcsv, format: csv, inputs: [cs]}
""" % (port, mock.bootstrap, mock.bootstrap, mock.bootstrap, mock.bootstrap, mock.bootstrap))
out = os.path.join(d, "out.jsonl")


def get(path):
    return inkprom.get(port, path)


def lines(path=out):
    try:
        with open(path) as f:
            return sum(1 for l in f if l.endswith("\n"))
    except FileNotFoundError:
        return 0


def rejected(text, node):
    n = 0
    for l in text.splitlines():
        if l.startswith('inkflow_records_rejected_total{node="%s"' % node):
            n += int(float(l.split()[-1]))
    return n


good = [{"key": "k%d" % (i % 5), "x": [float(i)]} for i in range(300)]
mock.produce("in", good)
bad = [b"not msgpack \xc1", b"\x93\x01\x02\x03", b"", b"\x81\xa1x\xa3abc", b"\xdc\xff\xff"] * 10
mock.produce("in", lines=bad)
js = ['{"x": [%d], "y": 1.5}' % i for i in range(50)] + ['{"x": [1]', 'nan', '{"x": "a"}']
mock.produce("injson", lines=js)
csv = ["s%d,%d.5,%d" % (i % 3, i, i) for i in range(40)] + ["s1,abc,1", "s1,2"]
mock.produce("incsv", lines=csv)

p = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: lines() >= 300 and rejected(get("/metrics")[1], "feed") >= 50,
                         timeout=60), "300 good records written, 50 bad ones counted")
m = get("/metrics")[1]
inkt.check(rejected(m, "feed") == 50, "rejected on /metrics: %d of 50" % rejected(m, "feed"))
# (the bad lines follow the good ones on their topic: wait for both counts)
inkt.check(inkt.wait_for(lambda: lines(os.path.join(d, "outjs.jsonl")) >= 50 and
                         rejected(get("/metrics")[1], "js") >= 3, timeout=30) and
           rejected(get("/metrics")[1], "js") == 3, "json topic: 50 records, 3 rejected")
inkt.check(inkt.wait_for(lambda: mock.count("outjson") >= 50 and mock.count("outcsv") >= 40 and
                         rejected(get("/metrics")[1], "cs") >= 2, timeout=30) and
           rejected(get("/metrics")[1], "cs") == 2,
           "csv topic: 40 records, 2 rejected; json and csv sinks wrote them")
kj = [json.loads(v) for _, _, _, v, _ in mock.consume("outjson")]
inkt.check(len(kj) == 50 and sorted(r["x"][0] for r in kj) == list(range(50)) and
           all(r["y"] == 1.5 and "kafka_offset" in r for r in kj),
           "json sink: one JSON object per message, source position included")
kc = [(k, v.decode()) for _, _, k, v, _ in mock.consume("outcsv")]
want = {"s%d,%d.5,%d" % (i % 3, i, i) for i in range(40)}
got = {",".join(v.split(",")[1:4]) for _, v in kc}
inkt.check(len(kc) == 40 and got == want and all(k == v.split(",")[1].encode() for k, v in kc),
           "csv sink: one row per message (t,key,x0,y,...), keyed by the record's key")
inkt.check(inkt.wait_for(lambda: get("/ready")[0] == 200, timeout=30), "/ready 200 with the broker up")

# the broker goes away
inkt.check(mock.command("down") == "ok", "mock broker down")
inkt.check(inkt.wait_for(lambda: get("/ready")[0] == 503, timeout=30),
           "/ready 503 while the broker is away")
# five kafka nodes notice the outage each in its own time: wait for feed's
inkt.check(inkt.wait_for(lambda: "feed: no broker reachable" in get("/ready")[1], timeout=30),
           "/ready says why: %r" % get("/ready")[1].strip())


def health_names_feed():
    status, body = get("/health")
    return status == 200 and "waiting: feed: no broker reachable" in body


inkt.check(inkt.wait_for(health_names_feed, timeout=30),
           "/health 200 and names the waiting node: %r" % (get("/health"),))
inkt.check(p.poll() is None, "the graph waits (still running)")
inkt.check(mock.command("up") == "ok", "mock broker back")
inkt.check(inkt.wait_for(lambda: get("/ready")[0] == 200, timeout=60), "/ready 200 again")
more = [{"key": "k%d" % (i % 5), "x": [float(i)]} for i in range(300, 500)]
mock.produce("in", more)
inkt.check(inkt.wait_for(lambda: lines() >= 500, timeout=60), "records after the outage come through")
p.send_signal(signal.SIGTERM)
_, err = p.communicate(timeout=60)
err = err.decode()
recs = inkt.read_jsonl(out)
xs = [int(r["x"][0]) for r in recs]
inkt.check(p.returncode == 0 and sorted(xs) == list(range(500)),
           "every good record exactly once across the outage (%d lines)" % len(recs))
per_key = {}
for r in recs:
    per_key.setdefault(r["key"], []).append((r["kafka_partition"], r["kafka_offset"]))
inkt.check(all(v == sorted(v) and len(set(v)) == len(v) for v in per_key.values()),
           "per key, source offsets strictly increase across the outage (no replay, no gap)")
row = inkt.summary_row(err, "feed")
inkt.check(row is not None and row["rejected"] == 50, "exit summary: feed rejected %s"
           % (row and row["rejected"]))
if inkt.failures:
    print(err[-3000:])

# configuration mistakes are caught before anything runs
def bad_config(extra, name):
    return inkt.write_config(d, """
sources:
  feed: {type: kafka, brokers: "%s", topic: [in, injson], group: g2, %s}
sinks:
  out: {type: file, path: x.jsonl, inputs: [feed]}
""" % (mock.bootstrap, extra), name)


for extra, want in [("options: {enable.auto.commit: true}",
                     "options: 'enable.auto.commit' is set by inkflow"),
                    ("format: csv", "format csv needs 'csv_header'"),
                    ("options: {no.such.property: 1}", None)]:
    path = bad_config(extra, "bad.yaml")
    r = inkt.run([inkt.INKFLOW, "validate" if want else "run", path], timeout=60)
    msg = r.stderr.decode()
    if want:
        inkt.check(r.returncode == 2 and want in msg, "refused: %s" % extra)
    else:
        inkt.check(r.returncode != 0 and "no.such.property" in msg,
                   "unknown client property refused at open: %s" % msg.strip()[-160:])
secret = os.path.join(d, "password")
with open(secret, "w") as f:
    f.write("hunter2\n")
os.chmod(secret, 0o644)
path = bad_config("secret_files: {sasl.password: password}", "secret.yaml")
r = inkt.run([inkt.INKFLOW, "run", path], timeout=60)
inkt.check(r.returncode != 0 and b"can be read by others" in r.stderr,
           "a secret file readable by others is refused")
mock.stop()
inkt.finish()

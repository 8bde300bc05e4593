"""`inkflow test CONFIG`: a test file next to the config gives input records per
source and the expected records per node; the graph runs on them without any
socket (the config's zmq and http ports are held by this test, so opening one
would fail) and the command exits 0 when every case passes, 1 with a diff
when one fails, 2 for a bad config or test file."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402

I = inkt.INKFLOW
d = inkt.tmpdir()
held = []
ports = []
for _ in range(4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    held.append(s)
    ports.append(s.getsockname()[1])

cfg = inkt.write_config(d, """
# comments and sockets: none of this is opened by `inkflow test`
engine: {http: {listen: "127.0.0.1:%d"}, snapshot: {dir: snap, every: 1s}}
sources:
  readings: {type: zmq, socket: pull, bind: "tcp://127.0.0.1:%d"}
  api: {type: zmq, socket: router, bind: "tcp://127.0.0.1:%d", reply_from: pct}
operators:
  pct: {type: ecdf, inputs: [readings, api], mode: kll, key_by: key, quantiles: [0.5],
        dead_letter: bad}
sinks:
  out: {type: zmq, socket: push, bind: "tcp://127.0.0.1:%d", inputs: [pct]}
  bad: {type: file, path: bad.jsonl}
""" % tuple(ports), "graph.yaml")
passing = """
tests:
  - name: first readings
    input:
      readings: [{x: [1], key: a}, {x: [3], key: a}, {x: [2], key: a}, {x: [5], key: b}]
    expect:
      pct:
        - {key: a, F: 0, n: 0}
        - {key: a, F: 1, n: 1, q50: 1}
        - {key: a, F: 0.5, n: 2, q50: 1}
        - {key: b, F: 0, n: 0}
  - name: a query through the router source
    input:
      readings: [{x: [1], key: a}, {x: [3], key: a}]
      api: [{op: quantile, key: a, r: [0.5, 1]}]
    expect:
      pct: [{n: 0}, {n: 1}, {q: [1, 3], n: 2}]
  - name: each case starts from an empty state
    input:
      readings: [{x: [7], key: a}]
    expect:
      pct: [{F: 0, n: 0}]
"""
inkt.write_config(d, passing, "graph.test.yaml")
p = inkt.run([I, "test", cfg], timeout=60)
out = p.stdout.decode()
inkt.check(p.returncode == 0 and "3 of 3 tests passed" in out,
           "passing cases: exit 0 (rc=%d)\n%s%s" % (p.returncode, out, p.stderr.decode()))
inkt.check(out.count("ok   test") == 3, "each case reported ok")
inkt.check(not os.path.exists(os.path.join(d, "snap")), "no snapshot written next to the config")

failing = inkt.write_config(d, """
tests:
  - name: passes
    input: {readings: [{x: [1], key: a}]}
    expect: {pct: [{F: 0}]}
  - name: wrong F and one record too many expected
    input: {readings: [{x: [1], key: a}, {x: [3], key: a}]}
    expect: {pct: [{F: 0}, {F: 0.5}, {F: 1}]}
""", "failing.yaml")
p = inkt.run([I, "test", cfg, failing], timeout=60)
out = p.stdout.decode()
inkt.check(p.returncode == 1 and "FAIL test 2 'wrong F and one record too many expected': node pct" in out
           and '- expected {"F":0.5}' in out and '"F":1' in out and "got no record (2 emitted)" in out
           and "1 of 2 tests passed" in out,
           "a failing case: exit 1 with a diff (rc=%d)\n%s" % (p.returncode, out))

bad = inkt.write_config(d, "tests: [{name: x, input: {readings: []}}]\n", "bad.yaml")
p = inkt.run([I, "test", cfg, bad], timeout=60)
inkt.check(p.returncode == 2 and b"needs expect" in p.stderr, "a case without expect: exit 2 (%s)"
           % p.stderr.decode().strip())
p = inkt.run([I, "test", cfg, os.path.join(d, "nope.yaml")], timeout=60)
inkt.check(p.returncode == 2, "a missing test file: exit 2 (%s)" % p.stderr.decode().strip())
unknown = inkt.write_config(d, "tests: [{input: {readings: [{x: [1], key: a}]}, expect: {nope: []}}]\n",
                            "unknown.yaml")
p = inkt.run([I, "test", cfg, unknown], timeout=60)
inkt.check(p.returncode == 2 and b"expect.nope: no source or operator of that name" in p.stderr,
           "expect naming no node: exit 2 (%s)"
           % p.stderr.decode().strip().splitlines()[-1:])
broken = inkt.write_config(d, "sources: {a: {type: file}}\n", "broken.yaml")
p = inkt.run([I, "test", broken, failing], timeout=60)
inkt.check(p.returncode == 2 and b"broken.yaml:" in p.stderr,
           "a bad config: exit 2 with its own positions (%s)" % p.stderr.decode().strip().splitlines()[0])
for s in held:
    s.close()
inkt.finish()

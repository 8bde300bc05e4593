"""The command line through the real binary: every numeric option is checked
(bad values refused with exit 2 and a message naming the option); `send` reads
CSV, JSON Lines or msgpack from standard input without --format, says what it
assumed, and fails when it skipped every line."""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
import msgpack  # noqa: E402

I = inkt.INKFLOW
d = inkt.tmpdir()

# --- refused options: exit 2, the option named, nothing started -------------------
bad = [
    (["send", "tcp://127.0.0.1:1", "--hwm", "abc"], "--hwm"),
    (["send", "tcp://127.0.0.1:1", "--hwm", "-3"], "--hwm"),
    (["send", "tcp://127.0.0.1:1", "--hwm", "99999999999999999999"], "--hwm"),
    (["send", "tcp://127.0.0.1:1", "--eos-timeout", "xyz"], "--eos-timeout"),
    (["send", "tcp://127.0.0.1:1", "--eos-timeout", "1.5s"], "--eos-timeout"),
    (["send", "tcp://127.0.0.1:1", "--eos-timeout", "nan"], "--eos-timeout"),
    (["send", "tcp://127.0.0.1:1", "--format", "xml"], "--format"),
    (["send", "tcp://127.0.0.1:1", "--hwm"], "--hwm"),
    (["send", "tcp://127.0.0.1:1", "--bogus"], "--bogus"),
    (["send", "tcp://127.0.0.1:1", "a", "b"], "'b'"),
    (["recv", "tcp://127.0.0.1:1", "--count", "ten"], "--count"),
    (["recv", "tcp://127.0.0.1:1", "--count", "0"], "--count"),
    (["recv", "tcp://127.0.0.1:1", "--timeout", "1x"], "--timeout"),
    (["recv", "tcp://127.0.0.1:1", "--socket", "req"], "--socket"),
    (["query", "tcp://127.0.0.1:1", "{}", "--timeout", "soon"], "--timeout"),
    (["query", "tcp://127.0.0.1:1", "{}", "--timeout", "-1"], "--timeout"),
    (["run", "x.yaml", "--resume"], "--resume"),
    (["run", "a.yaml", "b.yaml"], "'b.yaml'"),
    (["validate", "--strict", "x.yaml"], "--strict"),
]
for args, name in bad:
    p = inkt.run([I] + args, timeout=30)
    err = p.stderr.decode()
    inkt.check(p.returncode == 2 and name in err,
               "refused with exit 2: %s (rc=%d: %s)" % (" ".join(args), p.returncode, err.strip()))

# --help still works and exits 0 for every subcommand
for cmd in ("run", "validate", "send", "recv", "query", "keygen"):
    p = inkt.run([I, cmd, "--help"], timeout=30)
    inkt.check(p.returncode == 0 and b"usage: inkflow " + cmd.encode() in p.stdout,
               "%s --help exits 0 with its usage" % cmd)

# --- send from standard input into a running graph ------------------------------
ep = inkt.endpoint()
out = os.path.join(d, "out.jsonl")
cfg = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "%s"}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: file, path: out.jsonl, inputs: [pass]}
""" % ep)
graph = inkt.start([I, "run", cfg])


def send_stdin(data, *extra):
    return inkt.run([I, "send", ep, "--eos-timeout", "20"] + list(extra), input=data, timeout=60)


csv_text = "x0,x1,y\n" + "".join("%d,%d.5,%d\n" % (i, i, -i) for i in range(50))
p = send_stdin(csv_text.encode())
err = p.stderr.decode()
inkt.check(p.returncode == 0 and "50 records sent" in err,
           "CSV on stdin without --format: 50 records sent, exit 0 (rc=%d: %s)" % (p.returncode, err.strip()))
inkt.check("read as CSV" in err and "CSV header" in err, "send says it read stdin as CSV: %s" % err.splitlines()[0])

jl = "".join(json.dumps({"x": [i, i], "tag": "jl"}) + "\n" for i in range(20))
p = send_stdin(jl.encode())
err = p.stderr.decode()
inkt.check(p.returncode == 0 and "20 records sent" in err and "read as JSON Lines" in err,
           "JSON Lines on stdin: 20 sent, says so (%s)" % err.strip().replace("\n", " | "))

mp = b"".join(msgpack.packb({"x": [i, 1.0], "tag": "mp"}) for i in range(10))
p = send_stdin(mp)
err = p.stderr.decode()
inkt.check(p.returncode == 0 and "10 records sent" in err and "read as msgpack" in err,
           "msgpack on stdin: 10 sent, says so (%s)" % err.strip().replace("\n", " | "))

# a stream longer than the sniffed prefix and the pipe buffer arrives whole
big = "x0,x1\n" + "".join("%d,%d\n" % (i, 2 * i) for i in range(60000))
p = send_stdin(big.encode())
inkt.check(p.returncode == 0 and "60000 records sent" in p.stderr.decode(),
           "60000 CSV lines on stdin (%d bytes) all sent: %s" % (len(big), p.stderr.decode().strip()[-120:]))

# every line skipped: CSV forced to be read as JSON Lines -> exit 1, said why
p = send_stdin(csv_text.encode(), "--format", "jsonl")
err = p.stderr.decode()
inkt.check(p.returncode == 1 and "every input record was skipped" in err,
           "every line skipped: exit 1 (rc=%d: %s)" % (p.returncode, err.strip()[-200:]))
# a file of garbage too
junk = os.path.join(d, "junk.jsonl")
with open(junk, "w") as f:
    f.write("not json\nnor this\n")
p = inkt.run([I, "send", ep, junk, "--eos-timeout", "20"], timeout=60)
inkt.check(p.returncode == 1, "a file whose every line is skipped: exit 1 (rc=%d)" % p.returncode)
# some lines skipped, some sent: still 0 (the skipped ones are reported)
p = send_stdin(b'{"x":[1]}\nnope\n{"x":[2]}\n')
err = p.stderr.decode()
inkt.check(p.returncode == 0 and "2 records sent" in err and "1 input records skipped" in err,
           "partial skip: exit 0 with the count (%s)" % err.strip().replace("\n", " | "))

graph.send_signal(signal.SIGTERM)
graph.wait(timeout=30)
got = inkt.read_jsonl(out)
csv_rows = [r for r in got if "y" in r]
inkt.check(len(csv_rows) == 50 and csv_rows[3]["x"] == [3, 3.5] and csv_rows[3]["y"] == -3,
           "the CSV records arrived as columns x0,x1 -> x and y (%d)" % len(csv_rows))
inkt.check(sum(1 for r in got if r.get("tag") == "jl") == 20, "the JSON Lines records arrived")
inkt.check(sum(1 for r in got if r.get("tag") == "mp") == 10, "the msgpack records arrived")
inkt.check(len(got) == 50 + 20 + 10 + 60000 + 2, "every record sent arrived (%d)" % len(got))

# --- run: a run that rejected what it was given exits 1 and says why ---------------
def run_graph(lines, engine=""):
    with open(os.path.join(d, "rj.jsonl"), "w") as f:
        f.write("".join(lines))
    c = inkt.write_config(d, engine + """
sources:
  src: {type: file, path: rj.jsonl}
operators:
  cdf: {type: ecdf, inputs: [src], mode: kll}
sinks:
  res: {type: file, path: rj-out.jsonl, inputs: [cdf]}
""", "rj.yaml")
    p = inkt.run([I, "run", c], timeout=60)
    return p.returncode, p.stderr.decode()


two_d = ['{"x":[%d,%d]}\n' % (i, i) for i in range(3)]
one_d = ['{"x":[%d]}\n' % i for i in range(9)]
rc, err = run_graph(two_d)
inkt.check(rc == 1 and "operator 'cdf' rejected all 3 records it received (dim=3)" in err,
           "every record rejected (dim): run exits 1 naming the node and reason (rc=%d: %s)" % (rc, err.strip().splitlines()[-1]))
rc, err = run_graph(["garbage\n", "{oops\n"])
inkt.check(rc == 1 and "source 'src' rejected all 2 records" in err,
           "every line undecodable: run exits 1 (rc=%d: %s)" % (rc, err.strip().splitlines()[-1]))
rc, err = run_graph(one_d + ['{"y": 1}\n', '{"x": [1], "y": 2}\n'])
row = inkt.summary_row(err, "cdf")
inkt.check(row is not None and row["why"] == {"missing_x": 1} and row["out"] == 10,
           "a record without x is rejected as missing_x (summary: %s)" % row)
rc, err = run_graph(one_d)
inkt.check(rc == 0, "nothing rejected: exit 0 (rc=%d)" % rc)
rc, err = run_graph(one_d + two_d[:1])
inkt.check(rc == 0, "1 of 10 rejected, default max_reject_ratio 1: exit 0 (rc=%d)" % rc)
rc, err = run_graph(one_d + two_d[:1], "engine: {max_reject_ratio: 0.05}\n")
inkt.check(rc == 1 and "rejected 1 of 10 records (10%: dim=1), above engine.max_reject_ratio 0.05" in err,
           "1 of 10 rejected above max_reject_ratio 0.05: exit 1 (%s)" % err.strip().splitlines()[-1])
rc, err = run_graph(one_d + two_d[:1], "engine: {max_reject_ratio: 0.1}\n")
inkt.check(rc == 0, "1 of 10 rejected at max_reject_ratio 0.1 (not above): exit 0 (rc=%d)" % rc)
rc, err = run_graph(one_d, "engine: {max_reject_ratio: 1.5}\n")
inkt.check(rc == 2 and "max_reject_ratio" in err, "max_reject_ratio 1.5 is a config error (rc=%d)" % rc)

# --- run --restore=auto: fresh when there is no snapshot, restored when there is ------
with open(os.path.join(d, "ra.jsonl"), "w") as f:
    f.write("".join(one_d))
ra = inkt.write_config(d, """
engine: {snapshot: {dir: ra-snap}}
sources:
  src: {type: file, path: ra.jsonl}
operators:
  cdf: {type: ecdf, inputs: [src], mode: kll}
sinks:
  res: {type: file, path: ra-out.jsonl, inputs: [cdf]}
""", "ra.yaml")
p = inkt.run([I, "run", ra, "--restore"], timeout=60)
inkt.check(p.returncode == 2 and b"nothing to restore" in p.stderr,
           "--restore without a snapshot: exit 2 (%s)" % p.stderr.decode().strip().splitlines()[0])
p = inkt.run([I, "run", ra, "--restore=auto"], timeout=60)
inkt.check(p.returncode == 0 and b"no snapshot at" in p.stderr and b"starting fresh" in p.stderr,
           "--restore=auto without a snapshot: starts fresh, says so (rc=%d)" % p.returncode)
p = inkt.run([I, "run", ra, "--restore=auto"], timeout=60)
inkt.check(p.returncode == 0 and b"restored from" in p.stderr,
           "--restore=auto with a snapshot: restores (rc=%d: %s)" % (p.returncode, p.stderr.decode().strip().splitlines()[0]))
inkt.check(len(inkt.read_jsonl(os.path.join(d, "ra-out.jsonl"))) == len(one_d),
           "the restored run emitted nothing twice")
with open(os.path.join(d, "ra-snap", "ra.snap"), "r+b") as f:
    f.seek(20)
    f.write(b"\xff\xff\xff\xff")
p = inkt.run([I, "run", ra, "--restore=auto"], timeout=60)
inkt.check(p.returncode == 2, "--restore=auto with a damaged snapshot: refused, exit 2 (rc=%d: %s)"
           % (p.returncode, p.stderr.decode().strip()[-160:]))
p = inkt.run([I, "run", ra, "--restore=maybe"], timeout=60)
inkt.check(p.returncode == 2 and b"--restore takes" in p.stderr, "--restore=maybe refused")
# send against a CURVE receiver without CURVE: the refused handshake leaves the
# PUSH socket no peer; more records than the queues hold must not block send
# for good (it did: a blocking zmq_send); it gives up after --eos-timeout.
import time  # noqa: E402
import zmq  # noqa: E402
zctx = zmq.Context()
cpub, csec = zmq.curve_keypair()
cs = zctx.socket(zmq.PULL)
cs.curve_server = True
cs.curve_secretkey = csec
cs.curve_publickey = cpub
cport = cs.bind_to_random_port("tcp://127.0.0.1")
many = os.path.join(d, "many.jsonl")
with open(many, "w") as f:
    for i in range(20000):
        f.write('{"x": [%d]}\n' % i)
t0 = time.monotonic()
p = inkt.run([I, "send", "tcp://127.0.0.1:%d" % cport, many, "--eos-timeout", "1.5"], timeout=60)
inkt.check(p.returncode == 1 and b"no receiver took a record for 1.5 s" in p.stderr,
           "send to a receiver that refuses its handshake gives up, exit 1, in %.1f s: %s"
           % (time.monotonic() - t0, p.stderr.decode().strip()[-200:]))
cs.close(0)
zctx.term()
v = inkt.run([I, "--version"])
inkt.check(v.returncode == 0 and v.stdout.decode().startswith("inkflow ") and b"(commit " in v.stdout,
           "--version: %s" % v.stdout.decode().strip())
inkt.finish()

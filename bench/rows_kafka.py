"""Kafka row: records/s of `kafka source -> passthrough -> kafka sink` against a plain
librdkafka consume -> produce loop in C (bench/kafka_baseline.c), same run, same mock
cluster (tests/kafka_mock.c), same input topic read by a fresh consumer group each time.

    bench/run kafka

Both are timed the same way, from outside: the span of the output topic's message
timestamps (set by each producer when it is handed the record), so the group join
before the first record and the process start are not counted for either. Median of
3 alternating runs of 200,000 keyed records (1-D x, y; ~33-byte msgpack payloads) on
8 partitions. The issue's goal is a ratio of at least 0.8.
"""
import os
import signal
import statistics
import subprocess
import tempfile
import time

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("INK_BUILD") or os.path.join(ROOT, "build")
INKFLOW = os.path.join(BUILD, "inkflow")
MOCK = os.path.join(BUILD, "tests", "kafka_mock")
BASELINE = os.path.join(BUILD, "kafka_baseline")


def tool(*args, **kw):
    r = subprocess.run([MOCK] + list(args), capture_output=True, timeout=300, **kw)
    if r.returncode != 0:
        raise RuntimeError("kafka_mock %s: %s" % (args[0], r.stderr.decode()[-2000:]))
    return r.stdout.decode()


def span_rate(boot, topic, n):
    """n / (last - first timestamp) of the topic's messages, in records/s."""
    ts = [int(l.split()[2]) for l in tool("consume", boot, topic, "120").splitlines()]
    if len(ts) < n:
        raise RuntimeError("%s holds %d records, expected %d" % (topic, len(ts), n))
    return n / max((max(ts) - min(ts)) / 1e3, 1e-3)


def run_inkflow(d, boot, out, n, i):
    cfg = os.path.join(d, "kafka%d.yaml" % i)
    with open(cfg, "w") as f:
        f.write("""
sources:
  feed: {type: kafka, brokers: "%s", topic: in, group: bench-inkflow-%d}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: kafka, brokers: "%s", topic: %s, inputs: [pass]}
""" % (boot, i, boot, out))
    p = subprocess.Popen([INKFLOW, "run", cfg], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 180
        while int(tool("count", boot, out)) < n:
            if p.poll() is not None:
                raise RuntimeError("inkflow exited: " + p.stderr.read().decode()[-2000:])
            if time.time() > deadline:
                raise RuntimeError("inkflow forwarded too few records in 180 s")
            time.sleep(0.2)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return span_rate(boot, out, n)


def row_kafka(n=200000, reps=3):
    d = tempfile.mkdtemp(prefix="inkbench-kafka-")
    topics = ["in:8"] + ["out_b%d:8" % i for i in range(reps)] + ["out_i%d:8" % i for i in range(reps)]
    mock = subprocess.Popen([MOCK, "serve"] + topics, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        boot = mock.stdout.readline().decode().strip()
        data = b"".join(msgpack.packb({"key": "k%d" % (i % 1000), "x": [float(i % 97)],
                                       "y": 0.5}) for i in range(n))
        tool("produce", boot, "in", input=data)
        eng, base = [], []
        for i in range(reps):
            r = subprocess.run([BASELINE, boot, "in", "out_b%d" % i, str(n), "180"],
                               capture_output=True, timeout=240)
            if r.returncode != 0:
                raise RuntimeError("kafka_baseline: " + r.stderr.decode())
            base.append(span_rate(boot, "out_b%d" % i, n))
            eng.append(run_inkflow(d, boot, "out_i%d" % i, n, i))
    finally:
        os.killpg(mock.pid, signal.SIGKILL)
        mock.wait()
    e, b = statistics.median(eng), statistics.median(base)
    return [("kafka source -> passthrough -> kafka sink, mock cluster, 8 partitions, %d records"
             % n, "%.0f rec/s" % e,
             "C librdkafka consume -> produce loop: %.0f rec/s" % b, "%.2f" % (e / b))]


ROWS = {"kafka": row_kafka}

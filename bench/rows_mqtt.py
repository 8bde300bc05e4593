"""MQTT rows (docs/mqtt.md): records/s from a broker through inkflow to a file,
against mosquitto's own subscriber writing the same messages to a file.

- `mqtt`: a real mosquitto on 127.0.0.1 (tests/e2e/mqttbroker.py). The same N
  JSON messages ({"key": ..., "x": [..2 numbers..]}, ~40 bytes) are published by
  `inkflow run` (file -> mqtt sink, the same QoS; mosquitto_pub -l of 2.0.11 exits
  early on a large input at QoS 1) on bench/<key>/v, at QoS 0 and QoS 1, while one
  subscriber writes them to a file: `mosquitto_sub -q Q -C N`
  (the baseline) or `inkflow run` with `mqtt (qos Q) -> passthrough -> file
  (jsonl)`. Rate = N / (time from the publisher's start to the N-th record
  written; inkflow's file sink flushes every 100 ms, polled every 20 ms). Median
  of 3 alternating runs each; the ratio is inkflow / mosquitto_sub.
"""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("INK_BUILD") or os.path.join(ROOT, "build")
INKFLOW = os.path.join(BUILD, "inkflow")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import mqttbroker  # noqa: E402


def _lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def _publish(b, payload_file, qos):
    """The publisher: inkflow's file source -> mqtt sink at the same QoS (C, waits
    for every acknowledgement before it exits). mosquitto_pub -l was the first
    choice, but 2.0.11's exits early on a large stdin at QoS 1 (3,401 of 200,000
    delivered, exit status 0)."""
    cfg = payload_file + ".pub%d.yaml" % qos
    with open(cfg, "w") as f:
        f.write("""
sources:
  lines: {type: file, path: %s}
sinks:
  pub: {type: mqtt, broker: "%s", topic: "bench/{key}/v", qos: %d, client_id: bench-pub-%d,
        inputs: [lines]}
""" % (payload_file, b.url, qos, qos))
    return subprocess.Popen([INKFLOW, "run", cfg], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _baseline(b, tmp, payload_file, n, qos):
    out = os.path.join(tmp, "sub.txt")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-q", str(qos),
                            "-t", "bench/#", "-C", str(n), "-i", "bench-sub-%d" % qos],
                           stdout=open(out, "wb"), stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # subscribed (no readiness signal from mosquitto_sub)
    t0 = time.time()
    pub = _publish(b, payload_file, qos)
    sub.wait(timeout=300)
    el = time.time() - t0
    pub.wait(timeout=60)
    got = _lines(out)
    if got != n:
        raise RuntimeError("mosquitto_sub wrote %d of %d" % (got, n))
    return n / el


def _inkflow(b, tmp, payload_file, n, qos):
    out = os.path.join(tmp, "ink.jsonl")
    if os.path.exists(out):
        os.unlink(out)
    cfg = os.path.join(tmp, "mqtt.yaml")
    with open(cfg, "w") as f:
        f.write("""
sources:
  feed: {type: mqtt, broker: "%s", topics: ["bench/#"], qos: %d, client_id: bench-ink-%d,
         clean_session: true}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: file, path: %s, inputs: [pass]}
""" % (b.url, qos, qos, out))
    g = subprocess.Popen([INKFLOW, "run", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        time.sleep(0.5)  # connected and subscribed
        t0 = time.time()
        pub = _publish(b, payload_file, qos)
        deadline = t0 + 300
        while _lines(out) < n and time.time() < deadline:
            time.sleep(0.02)
        el = time.time() - t0
        pub.wait(timeout=60)
        got = _lines(out)
    finally:
        os.killpg(g.pid, signal.SIGTERM)
        g.wait(timeout=60)
    if got != n:
        raise RuntimeError("inkflow wrote %d of %d" % (got, n))
    return n / el


def row_mqtt(n=200000, reps=3):
    tmp = tempfile.mkdtemp(prefix="inkbench-mqtt-")
    payload_file = os.path.join(tmp, "payloads.jsonl")
    with open(payload_file, "w") as f:
        for i in range(n):
            f.write('{"x": [%d.5, %d], "key": "s%d"}\n' % (i, i % 977, i % 7))
    b = mqttbroker.Broker().start()
    rows = []
    try:
        for qos in (0, 1):
            eng, base = [], []
            for _ in range(reps):
                base.append(_baseline(b, tmp, payload_file, n, qos))
                eng.append(_inkflow(b, tmp, payload_file, n, qos))
            e, s = statistics.median(eng), statistics.median(base)
            rows.append(("mqtt QoS %d: mosquitto -> inkflow (mqtt -> passthrough -> file), %d JSON "
                         "messages (`bench/run mqtt`)" % (qos, n),
                         "%.0f rec/s (runs: %s)" % (e, ", ".join("%.0f" % v for v in eng)),
                         "mosquitto_sub -> file: %.0f rec/s (runs: %s)" % (s, ", ".join("%.0f" % v for v in base)),
                         "%.2f" % (e / s)))
    finally:
        b.stop()
    return rows


ROWS = {"mqtt": row_mqtt}

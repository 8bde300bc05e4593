"""The mqtt source and sink (docs/mqtt.md) against a real mosquitto on
127.0.0.1 (tests/e2e/mqttbroker.py):

- 10,000 JSON readings published at QoS 1 on site/N/temp arrive keyed by
  topic level 2, and the per-key ECDF answers equal those computed from the
  same readings read from a file with the same x mapping;
- bad payloads (not JSON, a missing field, a string for a number, 1 MB) are
  rejected and counted by reason while the valid ones keep flowing;
- the broker restarted mid-stream: inkflow reconnects, /ready goes false then
  true, and what was published while it was away arrives (persistent session,
  QoS 1); inkflow itself stopped and started again: the same;
- the sink publishes each record to out/{key} at QoS 1, every one arrives.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
import mqttbroker  # noqa: E402

d = inkt.tmpdir()
broker = mqttbroker.Broker().start()
SITES = 5
N = 10000


def http(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def lines(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def metric(port, name, **labels):
    st, body = http(port, "/metrics")
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for ln in body.splitlines():
        if ln.startswith(name + "{"):
            lab = ln[len(name) + 1:ln.index("}")]
            if ",".join(sorted(lab.split(","))) == want:
                return float(ln.split()[-1])
    return None


def start_graph(name, http_port, out, client_id="inkflow-e2e"):
    cfg = inkt.write_config(d, """
engine: {http: {listen: "127.0.0.1:%d"}}
sources:
  feed:
    type: mqtt
    broker: %s
    topics: [site/+/temp]
    qos: 1
    client_id: %s
    fields: {x: [temp], key: {topic_level: 2}}
    dead_letter: dead
operators:
  pct: {type: ecdf, mode: kll, key_by: key, max_keys: 64, inputs: [feed]}
sinks:
  out: {type: file, path: %s, inputs: [pct]}
  dead: {type: file, path: dead.jsonl}
""" % (http_port, broker.url, client_id, out), name)
    g = inkt.start([inkt.INKFLOW, "run", cfg])
    ok = inkt.wait_for(lambda: http(http_port, "/ready")[0] == 200, 30)
    return g, ok


def stop_graph(g):
    g.send_signal(signal.SIGTERM)
    g.wait(timeout=60)
    return g.stderr.read().decode()


# --- 10,000 readings keyed by topic level, the same answers as from a file ----------------
vals = [round(15 + 10 * ((i * 7919) % 1000) / 1000.0 + (i % SITES), 3) for i in range(N)]
msgs = [("site/%d/temp" % (i % SITES), json.dumps({"temp": v, "seq_no": i}).encode())
        for i, v in enumerate(vals)]
with open(os.path.join(d, "same.jsonl"), "w") as f:
    for i, v in enumerate(vals):
        f.write(json.dumps({"site": str(i % SITES), "temp": v}) + "\n")

hp = inkt.free_port()
out = os.path.join(d, "mqtt_out.jsonl")
g, ok = start_graph("mqtt.yaml", hp, out)
inkt.check(ok, "the mqtt graph is ready (connected and subscribed)")
t0 = time.time()
mqttbroker.publish(broker.port, msgs, qos=1)
arrived = inkt.wait_for(lambda: lines(out) >= N, 120)
el = time.time() - t0
inkt.check(arrived, "all %d QoS 1 readings arrived (%d) in %.1f s" % (N, lines(out), el))

# bad payloads between valid ones: rejected by reason, the valid ones flow
bad = [("site/1/temp", b"not json at all"), ("site/2/temp", b'{"hum": 40}'),
       ("site/3/temp", b'{"temp": "21.5"}'), ("site/4/temp", b'{"temp": ' + b"1" * (1 << 20) + b"}")]
mixed = []
for i, b in enumerate(bad):
    mixed.append(b)
    mixed.append(("site/0/temp", json.dumps({"temp": 100.0 + i}).encode()))
mqttbroker.publish(broker.port, mixed, qos=1)
inkt.check(inkt.wait_for(lambda: lines(out) >= N + len(bad), 60), "the valid readings between bad ones arrive")
inkt.check(inkt.wait_for(lambda: metric(hp, "inkflow_records_rejected_total", node="feed", kind="source", reason="decode") == 1, 10) and
           metric(hp, "inkflow_records_rejected_total", node="feed", kind="source", reason="missing") == 1 and
           metric(hp, "inkflow_records_rejected_total", node="feed", kind="source", reason="type") == 1 and
           metric(hp, "inkflow_records_rejected_total", node="feed", kind="source", reason="too_large") == 1,
           "not JSON, a missing field, a string for a number, 1 MB: one each, counted by reason")
err = stop_graph(g)
inkt.check(g.returncode == 0, "SIGTERM: the graph exits 0 (rc=%s)" % g.returncode)
dl = inkt.read_jsonl(os.path.join(d, "dead.jsonl"))
inkt.check([(r["_reject"], r["_error"]) for r in dl] == [
    ("decode", "JSON: invalid token near 'not' (column 3) (topic site/1/temp)"),
    ("missing", "x[0] 'temp': no such field (topic site/2/temp)"),
    ("type", "x[0] 'temp': expected a number, got a string (topic site/3/temp)"),
    ("too_large", "payload of 1048586 bytes on site/4/temp, over max_message_bytes 65536")],
    "dead letters name the reason, the field and the topic: %s" % [(r["_reject"], r["_error"]) for r in dl])

got = inkt.read_jsonl(out)
cfg = inkt.write_config(d, """
sources:
  feed: {type: file, path: same.jsonl, fields: {x: [temp], key: site}}
operators:
  pct: {type: ecdf, mode: kll, key_by: key, max_keys: 64, inputs: [feed]}
sinks:
  out: {type: file, path: file_out.jsonl, inputs: [pct]}
""", "file.yaml")
p = inkt.run([inkt.INKFLOW, "run", cfg])
ref = inkt.read_jsonl(os.path.join(d, "file_out.jsonl"))


def per_key(rs, n=None):
    by = {}
    for r in rs[:n] if n else rs:
        by.setdefault(r["key"], []).append((r["x"], r["F"], r["n"]))
    return by


inkt.check(p.returncode == 0 and len(ref) == N, "the file run gives %d answers" % len(ref))
mq = per_key(got, N)
inkt.check(sorted(mq) == [str(s) for s in range(SITES)] and mq == per_key(ref),
           "per-key ECDF answers over MQTT equal those from the file (%d keys)" % len(mq))

# --- the broker restarted mid-stream ---------------------------------------------------
out2 = os.path.join(d, "restart_out.jsonl")
hp2 = inkt.free_port()
g, ok = start_graph("restart.yaml", hp2, out2, client_id="inkflow-restart")
inkt.check(ok, "restart graph ready")
batch = lambda lo, hi: [("site/%d/temp" % (i % SITES), json.dumps({"temp": float(i)}).encode()) for i in range(lo, hi)]
mqttbroker.publish(broker.port, batch(0, 2000))
inkt.check(inkt.wait_for(lambda: lines(out2) >= 2000, 60), "first 2000 arrived")
broker.stop()
inkt.check(inkt.wait_for(lambda: http(hp2, "/ready")[0] == 503, 30),
           "/ready is 503 while the broker is down: %s" % (http(hp2, "/ready"),))
st, body = http(hp2, "/ready")
inkt.check("feed" in body and "127.0.0.1:%d" % broker.port in body, "/ready says which node and broker: %r" % body)
inkt.check(metric(hp2, "inkflow_mqtt_connected", node="feed") == 0, "inkflow_mqtt_connected 0 while down")
broker.start()
mqttbroker.publish(broker.port, batch(2000, 4000))  # likely before inkflow is back: the session keeps them
inkt.check(inkt.wait_for(lambda: http(hp2, "/ready")[0] == 200, 30), "/ready is 200 again after the broker is back")
inkt.check(inkt.wait_for(lambda: lines(out2) >= 4000, 60), "what was published around the restart arrived (%d)" % lines(out2))
inkt.check(g.poll() is None, "inkflow kept running through the restart")

# inkflow away: stopped, 1000 published, started again with the same client_id
err = stop_graph(g)
inkt.check(g.returncode == 0, "stopped cleanly (rc=%s)" % g.returncode)
mqttbroker.publish(broker.port, batch(4000, 5000))
out3 = os.path.join(d, "away_out.jsonl")
g, ok = start_graph("away.yaml", inkt.free_port(), out3, client_id="inkflow-restart")
inkt.check(ok and inkt.wait_for(lambda: lines(out3) >= 1000, 60),
           "the 1000 published while inkflow was away arrive on its return (%d)" % lines(out3))
stop_graph(g)
seen = sorted(r["x"][0] for r in inkt.read_jsonl(out2) + inkt.read_jsonl(out3))
inkt.check(set(seen) == set(float(i) for i in range(5000)),
           "every one of the 5000 arrived at least once (%d deliveries, %d duplicates)" %
           (len(seen), len(seen) - len(set(seen))))

# --- the sink: each record to out/{key}, QoS 1 --------------------------------------------
sub = mqttbroker.Subscriber(broker.port, "out/#")
cfg = inkt.write_config(d, """
sources:
  feed: {type: file, path: same.jsonl, fields: {x: [temp], key: site}}
sinks:
  pub: {type: mqtt, broker: %s, topic: "out/{key}", qos: 1, inputs: [feed]}
""" % broker.url, "sink.yaml")
p = inkt.run([inkt.INKFLOW, "run", cfg])
inkt.check(p.returncode == 0, "file -> mqtt sink exits 0 (%s)" % p.stderr.decode()[-300:])
inkt.check(inkt.wait_for(lambda: len(sub.got) >= N, 60), "the subscriber got all %d (%d)" % (N, len(sub.got)))
sub.close()
by_topic = {}
for t, pl in sub.got:
    by_topic.setdefault(t, []).append(json.loads(pl)["x"][0])
inkt.check(by_topic == {"out/%d" % s: [vals[i] for i in range(N) if i % SITES == s] for s in range(SITES)},
           "each record on out/{key}, in order per topic")
row = inkt.summary_row(p.stderr.decode(), "pub")
inkt.check(row and row["out"] == N and row["dropped"] == 0, "sink summary: %s" % row)

# --- the other payload formats, a sink in the same graph, /metrics parsed, snapshots ------
import msgpack  # noqa: E402
import inkprom  # noqa: E402

hp3 = inkt.free_port()
cfg = inkt.write_config(d, """
engine:
  http: {listen: "127.0.0.1:%d"}
  snapshot: {dir: snaps, every: 0, every_records: 100}
sources:
  num: {type: mqtt, broker: %s, topics: [num/#], format: number, fields: {x: [value], key: {topic: true}}}
  rawnum: {type: mqtt, broker: %s, topics: [rawnum/#], format: number}
  csv: {type: mqtt, broker: %s, topics: [csv/+], format: csv, columns: [a, b, name],
        fields: {x: [b, a], key: name}}
  mp: {type: mqtt, broker: %s, topics: [mp/+/x], format: msgpack,
       fields: {x: [p.v], key: {topic_level: 2}, t: {field: ms, format: unix_ms}}}
operators:
  pass: {type: passthrough, inputs: [num, rawnum, csv, mp]}
sinks:
  out: {type: file, path: formats.jsonl, inputs: [pass]}
  echo: {type: mqtt, broker: %s, topic: "echo/{key}", qos: 0, inputs: [pass]}
""" % (hp3, broker.url, broker.url, broker.url, broker.url, broker.url), "formats.yaml")
g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: http(hp3, "/ready")[0] == 200, 30), "formats graph ready")
fmt_msgs = ([("num/a/b", b"21.5"), ("rawnum/z", b" -3e2\n"), ("num/a/b", b"warm")] +
            [("csv/1", b"1.5,2,st-%d" % i) for i in range(200)] +
            [("mp/s9/x", msgpack.packb({"p": {"v": 0.25}, "ms": 1700000000123}))])
mqttbroker.publish(broker.port, fmt_msgs)
fout = os.path.join(d, "formats.jsonl")
inkt.check(inkt.wait_for(lambda: lines(fout) >= 203, 30), "the formats arrive (%d of 203)" % lines(fout))
recs = inkt.read_jsonl(fout)
strip = lambda r: {k: v for k, v in r.items() if k != "seq"}
bykey = {r.get("key"): strip(r) for r in recs}  # sources interleave: found by key
inkt.check(bykey.get("num/a/b") == {"key": "num/a/b", "x": [21.5]} and bykey.get(None) == {"x": [-300]} and
           all(bykey.get("st-%d" % i) == {"key": "st-%d" % i, "x": [2, 1.5]} for i in range(200)) and
           bykey.get("s9") == {"t": 1700000000123000000, "key": "s9", "x": [0.25]},
           "number (value, whole topic as key), number without fields, csv with columns, msgpack "
           "with a dotted path and unix_ms: %s" % [bykey.get(k) for k in ("num/a/b", None, "st-0", "s9")])
fams = inkprom.scrape(hp3)
inkt.check(fams is not None and inkprom.value(fams, "inkflow_mqtt_connected", "inkflow_mqtt_connected",
                                              node="echo") == 1 and
           inkprom.value(fams, "inkflow_mqtt_connected", "inkflow_mqtt_connected", node="csv") == 1,
           "/metrics parses (prometheus_client) with five mqtt nodes, one family each")
inkt.check(inkt.wait_for(lambda: inkprom.value(inkprom.scrape(hp3) or {}, "inkflow_records_rejected",
                                                "inkflow_records_rejected_total", node="num",
                                                reason="decode") == 1, 10),
           "a number payload that is not one: rejected (decode)")
risk = inkprom.value(fams, "inkflow_mqtt_records_since_snapshot", "inkflow_mqtt_records_since_snapshot",
                     node="csv")
inkt.check(risk is not None and risk < 200,
           "records since the last snapshot is counted and reset by snapshots (csv: %s of 200)" % risk)
stop_graph(g)

# --- the example: configs/sensors-mqtt.yaml fed by examples/mqtt_publish.py ------------------
text = open(os.path.join(inkt.ROOT, "configs", "sensors-mqtt.yaml")).read()
hp5 = inkt.free_port()
text = text.replace("127.0.0.1:1883", broker.url).replace("127.0.0.1:9464", "127.0.0.1:%d" % hp5)
cfg = inkt.write_config(d, text, "sensors-mqtt.yaml")
g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: http(hp5, "/ready")[0] == 200, 30), "the example graph is ready (subscribed)")
p = inkt.run(["/usr/bin/python3", os.path.join(inkt.ROOT, "examples", "mqtt_publish.py"), "--broker", broker.url])
inkt.check(p.returncode == 0, "examples/mqtt_publish.py replays data/ (%s)" % p.stderr.decode().strip())
wout = os.path.join(d, "sensors-weather.jsonl")
inkt.check(inkt.wait_for(lambda: lines(wout) >= 1461, 60), "the example's 2-D density got every day (%d)" % lines(wout))
err = stop_graph(g)
row = inkt.summary_row(err, "percentile")
inkt.check(row and row["in"] == 17518 and row["out"] == 17518, "the example's percentiles: every reading (%s)" % row)

# msgpack payloads, retained: a subscriber that comes later gets the last record per key
cfg = inkt.write_config(d, """
sources:
  feed: {type: file, path: same.jsonl, fields: {x: [temp], key: site}}
sinks:
  pub: {type: mqtt, broker: %s, topic: "last/{key}", format: msgpack, retain: true, inputs: [feed]}
""" % broker.url, "retain.yaml")
p = inkt.run([inkt.INKFLOW, "run", cfg])
inkt.check(p.returncode == 0, "file -> mqtt sink (msgpack, retained) exits 0")
late = mqttbroker.Subscriber(broker.port, "last/#", client_id="inkflow-test-late")
inkt.check(inkt.wait_for(lambda: len(late.got) >= SITES, 20), "a late subscriber gets the retained ones (%d)" % len(late.got))
late.close()
want = {"last/%d" % s: {"key": str(s), "x": [vals[max(i for i in range(N) if i % SITES == s)]]} for s in range(SITES)}
inkt.check({t: msgpack.unpackb(pl, raw=False) for t, pl in late.got} == want,
           "the retained message of each topic is that key's last record, in msgpack")

broker.stop()

# --- a broker that wants a password: refused with a wrong one (/ready says why), then let in ----
auth = mqttbroker.Broker(extra_conf="")
pwfile = os.path.join(auth.dir, "passwd")
subprocess.run(["mosquitto_passwd", "-b", "-c", pwfile, "sensor", "s3cret"], check=True,
               capture_output=True)
if auth.user:  # mosquitto reads it after dropping to its user
    os.chown(pwfile, os.stat(auth.dir).st_uid, os.stat(auth.dir).st_gid)
with open(auth.conf) as f:
    conf = f.read().replace("allow_anonymous true", "allow_anonymous false")
with open(auth.conf, "w") as f:
    f.write(conf + "password_file %s\n" % pwfile)
auth.start()
with open(os.path.join(d, "pw"), "w") as f:
    f.write("wrong\n")
hp4 = inkt.free_port()
cfg = inkt.write_config(d, """
engine: {http: {listen: "127.0.0.1:%d"}}
sources:
  feed: {type: mqtt, broker: %s, topics: [site/+/temp], username: sensor, password_file: pw,
         fields: {x: [temp]}}
sinks:
  out: {type: file, path: auth_out.jsonl, inputs: [feed]}
""" % (hp4, auth.url), "auth.yaml")
g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: "not authorised" in http(hp4, "/ready")[1].lower() or
                         "not authorized" in http(hp4, "/ready")[1].lower(), 30),
           "a wrong password: /ready 503 says the broker refused it: %r" % (http(hp4, "/ready"),))
g.send_signal(signal.SIGTERM)
g.wait(timeout=60)
with open(os.path.join(d, "pw"), "w") as f:
    f.write("s3cret\n")
g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: http(hp4, "/ready")[0] == 200, 30), "the right password: ready")
p = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(auth.port), "-u", "sensor", "-P", "s3cret",
                    "-t", "site/1/temp", "-m", '{"temp": 7}', "-q", "1"], capture_output=True)
aout = os.path.join(d, "auth_out.jsonl")
inkt.check(inkt.wait_for(lambda: lines(aout) >= 1, 30), "a record through the authenticated session")
stop_graph(g)
auth.stop()

# --- TLS: a broker with a certificate from a throwaway CA; inkflow checks it ------------------
tdir = inkt.tmpdir()
ossl = lambda *a: subprocess.run(["openssl"] + list(a), check=True, capture_output=True, cwd=tdir)
ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=inkflow test CA",
     "-keyout", "ca.key", "-out", "ca.crt")
ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
with open(os.path.join(tdir, "san.ext"), "w") as f:
    f.write("subjectAltName=IP:127.0.0.1\n")
ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
     "-extfile", "san.ext", "-out", "server.crt")
tls = mqttbroker.Broker()
for fn in ("ca.crt", "server.crt", "server.key"):
    dst = os.path.join(tls.dir, fn)
    with open(os.path.join(tdir, fn), "rb") as a, open(dst, "wb") as b:
        b.write(a.read())
    if tls.user:
        os.chown(dst, os.stat(tls.dir).st_uid, os.stat(tls.dir).st_gid)
with open(tls.conf, "a") as f:
    f.write("cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n" % ((tls.dir,) * 3))
tls.start()
hp6 = inkt.free_port()
cfg = inkt.write_config(d, """
engine: {http: {listen: "127.0.0.1:%d"}}
sources:
  feed: {type: mqtt, broker: %s, topics: [site/+/temp], tls: {ca_file: %s/ca.crt},
         fields: {x: [temp]}}
sinks:
  out: {type: file, path: tls_out.jsonl, inputs: [feed]}
""" % (hp6, tls.url, tdir), "tls.yaml")
g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: http(hp6, "/ready")[0] == 200, 30),
           "TLS: connected, the broker's certificate checked against ca_file (%r)" % (http(hp6, "/ready"),))
p = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(tls.port), "--cafile", os.path.join(tdir, "ca.crt"),
                    "-t", "site/1/temp", "-m", '{"temp": 9}', "-q", "1"], capture_output=True)
tout = os.path.join(d, "tls_out.jsonl")
inkt.check(inkt.wait_for(lambda: lines(tout) >= 1, 30), "TLS: a record through the encrypted session")
stop_graph(g)
# a CA that did not sign the broker's certificate: refused, /ready says why
ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other CA",
     "-keyout", "other.key", "-out", "other.crt")
cfg = inkt.write_config(d, open(cfg).read().replace("/ca.crt}", "/other.crt}"), "tls_bad.yaml")
g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: http(hp6, "/ready")[0] == 503 and "TLS" in http(hp6, "/ready")[1], 30),
           "TLS with the wrong CA: not ready, and why (%r)" % (http(hp6, "/ready"),))
time_ok = inkt.wait_for(lambda: http(hp6, "/ready")[0] == 503, 1)
inkt.check(time_ok and g.poll() is None, "TLS with the wrong CA: inkflow keeps retrying, no crash")
stop_graph(g)
tls.stop()
inkt.finish()

"""`fields:` end to end with the real binary (docs/fields.md): selecting and
renaming columns of CSV, JSON Lines and msgpack files and of a zmq pull
source, dotted paths into nested objects, the four time formats and auto,
every reject message (missing, type, nonfinite, empty cell, missing column),
config errors, `inkflow validate` against a CSV header, and the explained
shape refusal (x has 2 values, ecdf kll takes 1: map one column ...)."""
import calendar
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
import msgpack  # noqa: E402

d = inkt.tmpdir()
WEATHER = os.path.join(inkt.ROOT, "data", "seattle-weather-2012-2015.csv")


def run_graph(text, name="graph.yaml"):
    cfg = inkt.write_config(d, text, name)
    p = inkt.run([inkt.INKFLOW, "run", cfg])
    return p, p.stderr.decode()


def ns_of(iso_no_tz, frac_ns=0, offset_s=0):
    return (calendar.timegm(tuple(int(v) for v in iso_no_tz.replace("T", "-").replace(":", "-").split("-")) +
                            (0, 0, 0)) - offset_s) * 10**9 + frac_ns


# --- CSV: one column of five into x, a running percentile ----------------------------
p, err = run_graph("""
sources:
  weather:
    type: file
    path: %s
    fields: {x: [temp_min], y: precipitation, t: {field: t, format: unix_ns}}
operators:
  pct: {type: ecdf, mode: kll, inputs: [weather]}
sinks:
  out: {type: file, path: csv_pct.jsonl, inputs: [pct]}
""" % WEATHER)
inkt.check(p.returncode == 0, "csv with fields: exits 0 (%s)" % err[-300:])
got = inkt.read_jsonl(os.path.join(d, "csv_pct.jsonl"))
rows = [line.rstrip("\n").split(",") for line in open(WEATHER)][1:]
inkt.check(len(got) == len(rows) == 1461, "every CSV row is a record (%d of %d)" % (len(got), len(rows)))
inkt.check(all(g["x"] == [float(r[2])] and g["y"] == float(r[1]) and g["t"] == int(r[0])
               for g, r in zip(got, rows)), "x = [temp_min], y = precipitation, t = t (unix_ns)")
# the same column given as x in JSON Lines without fields: the same answers
with open(os.path.join(d, "weather.jsonl"), "w") as f:
    for r in rows:
        f.write(json.dumps({"t": int(r[0]), "x": [float(r[2])], "y": float(r[1])}) + "\n")
p, err = run_graph("""
sources:
  weather: {type: file, path: weather.jsonl}
operators:
  pct: {type: ecdf, mode: kll, inputs: [weather]}
sinks:
  out: {type: file, path: jsonl_pct.jsonl, inputs: [pct]}
""", "plain.yaml")
ref = inkt.read_jsonl(os.path.join(d, "jsonl_pct.jsonl"))
inkt.check(ref == got, "csv + fields: gives the same F as the column written as x (%d records)" % len(ref))

# --- the explained shape refusal ------------------------------------------------------
p, err = run_graph("""
sources:
  weather: {type: file, path: %s, fields: {x: [temp_min, wind]}}
operators:
  pct: {type: ecdf, mode: kll, inputs: [weather]}
sinks:
  out: {type: file, path: dim.jsonl, inputs: [pct]}
""" % WEATHER, "dim.yaml")
hint = "x has 2 values, ecdf kll takes 1: map one column with fields: {x: [...]}"
log_lines = [ln for ln in err.splitlines() if ln.startswith("inkflow: [pct]") and hint in ln]
inkt.check(len(log_lines) == 1, "the log explains the first shape refusal once (%d lines)" % len(log_lines))
inkt.check(any(ln.strip().startswith("pct: 1461 records refused for their shape: " + hint)
               for ln in err.splitlines()), "the summary repeats it with the count")
row = inkt.summary_row(err, "pct")
inkt.check(row and row["why"].get("dim") == 1461, "all 1461 counted as dim: %s" % row)

# --- renaming, reordering, key and rfc3339 from CSV ----------------------------------
with open(os.path.join(d, "st.csv"), "w") as f:
    f.write("station,when,temp,hum,precip,note\n")
    f.write('a,2026-12-05T10:00:00Z,21.5,40,0.5,"x, y"\n')
    f.write("b,2026-12-05T11:30:00.25+01:00,19,55,0,\n")
    f.write("7,2026-12-05T10:00:00.123456789-02:30, 1e1 ,1,2,z\n")
p, err = run_graph("""
sources:
  s:
    type: file
    path: st.csv
    fields: {x: [hum, temp], y: precip, key: station, t: {field: when, format: rfc3339}}
operators:
  pass: {type: passthrough, inputs: [s]}
sinks:
  out: {type: file, path: st.jsonl, inputs: [pass]}
""", "st.yaml")
got = inkt.read_jsonl(os.path.join(d, "st.jsonl"))
want = [
    {"t": ns_of("2026-12-05T10:00:00"), "key": "a", "x": [40, 21.5], "y": 0.5},
    {"t": ns_of("2026-12-05T11:30:00", 250000000, 3600), "key": "b", "x": [55, 19], "y": 0},
    {"t": ns_of("2026-12-05T10:00:00", 123456789, -9000), "key": "7", "x": [1, 10], "y": 2},
]
strip = [{k: v for k, v in g.items() if k != "seq"} for g in got]
inkt.check(strip == want, "csv: renamed, reordered, key and rfc3339 with offsets: %s" % strip)

# --- JSON Lines and msgpack: dotted paths, time formats ------------------------------
base = 1764928800  # 2025-12-05T10:00:00Z
recs = [
    {"payload": {"temp": 21.5, "hum": 40}, "meta": {"station": "s1"}, "ts": base, "ms": base * 1000 + 7,
     "ns": base * 10**9 + 123, "fs": base + 0.25, "iso": "2025-12-05T10:00:00.5Z", "a.b": 3},
    {"payload": {"temp": -3, "hum": 99.5}, "meta": {"station": 42}, "ts": base + 1, "ms": base * 1000,
     "ns": base * 10**9, "fs": base, "iso": "2025-12-05T10:00:00+00:00", "a.b": 4},
]
with open(os.path.join(d, "n.jsonl"), "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
with open(os.path.join(d, "n.msgpack"), "wb") as f:
    for r in recs:
        f.write(msgpack.packb(r))
cases = [  # (t mapping, expected t of each record)
    ("{field: ts, format: unix_s}", [base * 10**9, (base + 1) * 10**9]),
    ("{field: ms, format: unix_ms}", [(base * 1000 + 7) * 10**6, base * 10**9]),
    ("{field: ns, format: unix_ns}", [base * 10**9 + 123, base * 10**9]),
    ("{field: fs, format: unix_s}", [base * 10**9 + 250000000, base * 10**9]),
    ("{field: iso, format: rfc3339}", [base * 10**9 + 500000000, base * 10**9]),
    ("ts", [base * 10**9, (base + 1) * 10**9]),      # auto: a number is unix_s
    ("iso", [base * 10**9 + 500000000, base * 10**9]),  # auto: a string is RFC 3339
]
for ext in ("jsonl", "msgpack"):
    for i, (tmap, tw) in enumerate(cases):
        out = "n_%s_%d.jsonl" % (ext, i)
        p, err = run_graph("""
sources:
  s:
    type: file
    path: n.%s
    fields: {x: [payload.temp, payload.hum, a.b], key: meta.station, t: %s}
operators:
  pass: {type: passthrough, inputs: [s]}
sinks:
  out: {type: file, path: %s, inputs: [pass]}
""" % (ext, tmap, out), "n.yaml")
        got = inkt.read_jsonl(os.path.join(d, out))
        ok = (p.returncode == 0 and len(got) == 2 and
              [g["x"] for g in got] == [[21.5, 40, 3], [-3, 99.5, 4]] and
              [g["key"] for g in got] == ["s1", "42"] and [g["t"] for g in got] == tw and
              all(set(g) <= {"t", "key", "x", "seq"} for g in got))
        inkt.check(ok, "%s: dotted paths, a dotted name, key from an integer, t: %s (%s)" %
                   (ext, tmap, got if not ok else "ok"))

# --- every reject message, through a dead letter sink --------------------------------
bad = [  # (record, reason, message fragment)
    ({"payload": {"hum": 1}, "meta": {"station": "s"}, "ts": 1}, "missing", "x[0] 'payload.temp': no such field"),
    ({"payload": {"temp": None, "hum": 1}, "meta": {"station": "s"}, "ts": 1}, "missing",
     "x[0] 'payload.temp': no such field"),
    ({"payload": {"temp": "21.5", "hum": 1}, "meta": {"station": "s"}, "ts": 1}, "type",
     "x[0] 'payload.temp': expected a number, got a string"),
    ({"payload": {"temp": 1, "hum": [1]}, "meta": {"station": "s"}, "ts": 1}, "type",
     "x[1] 'payload.hum': expected a number, got an array"),
    ({"payload": 5, "meta": {"station": "s"}, "ts": 1}, "missing", "x[0] 'payload.temp': no such field"),
    ({"payload": {"temp": 1, "hum": 1}, "meta": {"station": True}, "ts": 1}, "type",
     "key 'meta.station': expected a string or an integer, got a boolean"),
    ({"payload": {"temp": 1, "hum": 1}, "meta": {"station": "s"}}, "missing", "t 'ts': no such field"),
    ({"payload": {"temp": 1, "hum": 1}, "meta": {"station": "s"}, "ts": "yesterday"}, "type",
     "t 'ts': 'yesterday' is not an RFC 3339 date-time"),
    ({"payload": {"temp": 1, "hum": 1}, "meta": {"station": "s"}, "ts": "2026-02-30T00:00:00Z"}, "type",
     "is not an RFC 3339 date-time"),
]
good = {"payload": {"temp": 1, "hum": 2}, "meta": {"station": "s"}, "ts": 5}
for ext in ("jsonl", "msgpack"):
    path = os.path.join(d, "bad.%s" % ext)
    with open(path, "wb") as f:
        for r, _, _ in bad:
            f.write(msgpack.packb(r) if ext == "msgpack" else (json.dumps(r) + "\n").encode())
            f.write(msgpack.packb(good) if ext == "msgpack" else (json.dumps(good) + "\n").encode())
    p, err = run_graph("""
sources:
  s:
    type: file
    path: bad.%s
    fields: {x: [payload.temp, payload.hum], key: meta.station, t: ts}
    dead_letter: dl
operators:
  pass: {type: passthrough, inputs: [s]}
sinks:
  out: {type: file, path: bad_out.jsonl, inputs: [pass]}
  dl: {type: file, path: bad_dl.jsonl}
""" % ext, "bad.yaml")
    got = inkt.read_jsonl(os.path.join(d, "bad_out.jsonl"))
    dl = inkt.read_jsonl(os.path.join(d, "bad_dl.jsonl"))
    inkt.check(len(got) == len(bad) and all(g["x"] == [1, 2] for g in got),
               "%s: every valid record between the bad ones flows (%d)" % (ext, len(got)))
    inkt.check(len(dl) == len(bad), "%s: every bad record dead-lettered (%d)" % (ext, len(dl)))
    for (r, reason, frag), l in zip(bad, dl):
        inkt.check(l.get("_reject") == reason and frag in l.get("_error", ""),
                   "%s: %s -> %s: %s" % (ext, json.dumps(r)[:60], l.get("_reject"), l.get("_error")))
    row = inkt.summary_row(err, "s")
    nmiss = sum(1 for b in bad if b[1] == "missing")
    inkt.check(row and row["why"] == {"missing": nmiss, "type": len(bad) - nmiss},
               "%s: counted by reason: %s" % (ext, row))

# CSV: text in a number column, inf, an empty cell, unix_ns with a fraction
with open(os.path.join(d, "bad.csv"), "w") as f:
    f.write("k,a,b,t\n")
    f.write("p,1,2,10\n")
    f.write("p,warm,2,10\n")
    f.write("p,inf,2,10\n")
    f.write("p,,2,10\n")
    f.write("p,1,2,10.5\n")
    f.write("p,3,4,11\n")
p, err = run_graph("""
sources:
  s: {type: file, path: bad.csv, fields: {x: [a, b], key: k, t: {field: t, format: unix_ns}}, dead_letter: dl}
operators:
  pass: {type: passthrough, inputs: [s]}
sinks:
  out: {type: file, path: badcsv_out.jsonl, inputs: [pass]}
  dl: {type: file, path: badcsv_dl.jsonl}
""", "badcsv.yaml")
got = inkt.read_jsonl(os.path.join(d, "badcsv_out.jsonl"))
dl = inkt.read_jsonl(os.path.join(d, "badcsv_dl.jsonl"))
inkt.check([g["x"] for g in got] == [[1, 2], [3, 4]] and [g["t"] for g in got] == [10, 11],
           "csv: the two valid rows flow: %s" % got)
want = [("type", "x[0] 'a': 'warm' is not a number"), ("nonfinite", "x[0] 'a': not finite"),
        ("missing", "'a': empty cell in column 2"), ("type", "t 't': unix_ns expects an integer")]
inkt.check(len(dl) == 4 and all(l["_reject"] == w[0] and w[1] in l["_error"] for l, w in zip(dl, want)),
           "csv: each reject names the field: %s" % [(l["_reject"], l["_error"]) for l in dl])

# a mapped column the header lacks: every row refused, and validate says so first
cfg = inkt.write_config(d, """
sources:
  weather: {type: file, path: %s, fields: {x: [temp_mn], y: precipitation}}
operators:
  pct: {type: ecdf, inputs: [weather]}
sinks:
  out: {type: file, path: nocol.jsonl, inputs: [pct]}
""" % WEATHER, "nocol.yaml")
v = inkt.run([inkt.INKFLOW, "validate", cfg])
inkt.check(v.returncode == 2 and "fields.x[0]: 'temp_mn' is not a column of" in v.stderr.decode() and
           "temp_min" in v.stderr.decode(), "validate: a mapped name missing from the CSV header (%s)" %
           v.stderr.decode().strip()[:200])
p = inkt.run([inkt.INKFLOW, "run", cfg])
row = inkt.summary_row(p.stderr.decode(), "weather")
inkt.check(row and row["why"] == {"missing": 1461} and "'temp_mn': no such column" in p.stderr.decode(),
           "run: every row refused as missing with the column named: %s" % row)
v = inkt.run([inkt.INKFLOW, "validate", inkt.write_config(d, """
sources:
  weather: {type: file, path: %s, fields: {x: [temp_min], y: precipitation}}
operators:
  pct: {type: ecdf, inputs: [weather]}
sinks:
  out: {type: file, path: ok.jsonl, inputs: [pct]}
""" % WEATHER, "okcol.yaml")])
inkt.check(v.returncode == 0, "validate: mapped names that are columns pass (%s)" % v.stderr.decode().strip())

# --- config errors -----------------------------------------------------------------------
for fields, frag in [
    ("{x: [temp], z: hum}", "fields.z: unknown key"),
    ("{xx: [temp]}", "did you mean 'x'?"),
    ("{t: {field: ts, format: unix_us}}", "expected one of auto, unix_s, unix_ms, unix_ns, rfc3339"),
    ("{t: {format: unix_s}}", "missing 'field'"),
    ("{x: []}", "fields.x: expected a name or a list"),
    ("{x: [a..b]}", "is not a field name or a dotted path"),
    ("{key: {topic_level: 0}}", "{topic_level: N}"),
    ("[x]", "fields: expected a map"),
    ("{}", "maps nothing"),
]:
    cfg = inkt.write_config(d, """
sources:
  s: {type: file, path: n.jsonl, fields: %s}
sinks:
  out: {type: file, path: cfgerr.jsonl, inputs: [s]}
""" % fields, "cfgerr.yaml")
    v = inkt.run([inkt.INKFLOW, "validate", cfg])
    inkt.check(v.returncode == 2 and frag in v.stderr.decode(),
               "config fields: %s -> %s" % (fields, v.stderr.decode().strip()[:160]))
v = inkt.run([inkt.INKFLOW, "validate", inkt.write_config(d, """
sources:
  s: {type: zmq, socket: router, bind: "tcp://127.0.0.1:1", reply_from: pass, fields: {x: [a]}}
operators:
  pass: {type: passthrough, inputs: [s]}
""", "router.yaml")])
inkt.check(v.returncode == 2 and "'fields' applies to pull and sub" in v.stderr.decode(),
           "a router source refuses fields: (%s)" % v.stderr.decode().strip()[:160])

# --- zmq pull: the same mapping over the wire ------------------------------------------
e_in = inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  feed:
    type: zmq
    socket: pull
    bind: "%s"
    stop_after_eos: 1
    fields: {x: [payload.temp, payload.hum, a.b], key: meta.station, t: {field: ms, format: unix_ms}}
    dead_letter: dl
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: file, path: zmq_out.jsonl, inputs: [pass]}
  dl: {type: file, path: zmq_dl.jsonl}
""" % e_in, "zmq.yaml")
graph = inkt.start([inkt.INKFLOW, "run", cfg])
with open(os.path.join(d, "z.jsonl"), "w") as f:
    for i in range(1000):
        r = {"payload": {"temp": i * 0.5, "hum": i}, "meta": {"station": "st%d" % (i % 3)},
             "ms": base * 1000 + i, "a.b": -i}
        if i % 100 == 99:
            r["payload"]["temp"] = "hot"
        f.write(json.dumps(r) + "\n")
s = inkt.run([inkt.INKFLOW, "send", e_in, os.path.join(d, "z.jsonl")], timeout=120)
inkt.check(s.returncode == 0, "send exits 0 (%s)" % s.stderr.decode().strip())
try:
    graph.wait(timeout=60)
except Exception:
    pass
err = graph.stderr.read().decode()
inkt.check(graph.returncode == 0, "the zmq graph ends at the end of stream (rc=%s)" % graph.returncode)
got = inkt.read_jsonl(os.path.join(d, "zmq_out.jsonl"))
dl = inkt.read_jsonl(os.path.join(d, "zmq_dl.jsonl"))
want = [i for i in range(1000) if i % 100 != 99]
inkt.check([g["x"] for g in got] == [[i * 0.5, i, -i] for i in want] and
           [g["key"] for g in got] == ["st%d" % (i % 3) for i in want] and
           [g["t"] for g in got] == [(base * 1000 + i) * 10**6 for i in want],
           "zmq: %d of %d mapped records arrive with x, key and t from their fields" % (len(got), len(want)))
inkt.check(len(dl) == 10 and all(l["_reject"] == "type" and "x[0] 'payload.temp': expected a number, got a string"
                                  in l["_error"] for l in dl), "zmq: the 10 bad ones rejected by name (%d)" % len(dl))

inkt.finish()

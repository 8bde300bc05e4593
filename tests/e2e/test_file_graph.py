"""End to end with the real binary and files: file -> passthrough -> file
reproduces the input (JSON Lines, msgpack, CSV); validate and help."""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402

d = inkt.tmpdir()
rng = random.Random(7)

# --- JSON Lines in -> JSON Lines out: the same records, in order -------------
recs = []
for i in range(5000):
    r = {"x": [rng.uniform(-1e6, 1e6) for _ in range(rng.randint(1, 5))]}
    if i % 2:
        r["y"] = rng.gauss(0, 1)
    if i % 3 == 0:
        r["key"] = "sensor-%d" % (i % 7)
    if i % 5 == 0:
        r["t"] = 1262304000000000000 + i
    if i % 11 == 0:
        r["arm"] = i % 13
    if i % 4 == 0:
        r["meta"] = {"site": "a\"b\\c", "tags": [1, 2.5, None, True], "deep": {"k": [[]]}}
    r["i"] = i
    recs.append(r)
src = os.path.join(d, "in.jsonl")
with open(src, "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
out = os.path.join(d, "out.jsonl")
cfg = inkt.write_config(d, """
sources:
  src: {type: file, path: in.jsonl}
operators:
  pass: {type: passthrough, inputs: [src]}
sinks:
  out: {type: file, path: out.jsonl, inputs: [pass]}
""")
p = inkt.run([inkt.INKFLOW, "run", cfg])
inkt.check(p.returncode == 0, "jsonl graph exits 0 (rc=%d: %s)" % (p.returncode, p.stderr.decode()[-500:]))
got = inkt.read_jsonl(out)
inkt.check(got == recs, "jsonl -> passthrough -> jsonl reproduces all %d records in order" % len(recs))
row = inkt.summary_row(p.stderr.decode(), "pass")
inkt.check(row is not None and row["in"] == len(recs) and row["out"] == len(recs), "summary counts pass: %s" % row)

# --- msgpack in -> msgpack out --------------------------------------------------
import msgpack  # noqa: E402

mp_in = os.path.join(d, "in.msgpack")
with open(mp_in, "wb") as f:
    for r in recs:
        f.write(msgpack.packb(r))
cfg2 = inkt.write_config(d, """
sources:
  src: {type: file, path: in.msgpack}
operators:
  pass: {type: passthrough, inputs: [src]}
sinks:
  out: {type: file, path: out.msgpack, inputs: [pass]}
""", "mp.yaml")
p = inkt.run([inkt.INKFLOW, "run", cfg2])
inkt.check(p.returncode == 0, "msgpack graph exits 0")
with open(os.path.join(d, "out.msgpack"), "rb") as f:
    got = list(msgpack.Unpacker(f, raw=False))
inkt.check(got == recs, "msgpack -> passthrough -> msgpack reproduces all records")

# --- CSV in -> CSV out --------------------------------------------------------------
csv_in = os.path.join(d, "in.csv")
with open(csv_in, "w") as f:
    f.write("t,key,x0,x1,y\n")
    for i in range(1000):
        f.write("%d,s%d,%r,%r,%r\n" % (1000 + i, i % 3, rng.uniform(-5, 5), float(i), rng.gauss(0, 1)))
cfg3 = inkt.write_config(d, """
sources:
  src: {type: file, path: in.csv}
operators:
  pass: {type: passthrough, inputs: [src]}
sinks:
  out: {type: file, path: out.csv, inputs: [pass]}
""", "csv.yaml")
p = inkt.run([inkt.INKFLOW, "run", cfg3])
inkt.check(p.returncode == 0, "csv graph exits 0")


def csv_values(path):
    with open(path) as f:
        rows = [line.rstrip("\n").split(",") for line in f]
    return rows[0], [[c if not c.replace(".", "").replace("-", "").replace("e", "").isdigit() else float(c)
                      for c in r] for r in rows[1:]]


ha, ra = csv_values(csv_in)
hb, rb = csv_values(os.path.join(d, "out.csv"))
inkt.check(ha == hb and ra == rb, "csv -> passthrough -> csv: same header, same values (%d rows)" % len(rb))

# --- the bundled sensor feed through stdout --------------------------------------------
cfg4 = inkt.write_config(d, """
sources:
  src: {type: file, path: %s/data/sensors-2010.csv}
operators:
  pass: {type: passthrough, inputs: [src]}
sinks:
  out: {type: file, path: "-", inputs: [pass]}
""" % inkt.ROOT, "stdout.yaml")
p = inkt.run([inkt.INKFLOW, "run", cfg4])
lines = p.stdout.decode().splitlines()
inkt.check(p.returncode == 0 and len(lines) == 17518, "sensors-2010.csv: 17518 records on stdout (%d)" % len(lines))
first = json.loads(lines[0])
inkt.check(first == {"t": 1262304000000000000, "key": "san-francisco", "x": [47.8]}, "first record decoded: %s" % first)

# --- validate and help --------------------------------------------------------------------
p = inkt.run([inkt.INKFLOW, "validate", cfg])
inkt.check(p.returncode == 0 and b"ok" in p.stdout, "validate accepts a good config")
bad = inkt.write_config(d, """
sources:
  src: {type: file, path: in.jsonl, formt: csv}
operators:
  pass: {type: passthrough, inputs: [nowhere]}
sinks:
  out: {type: file, path: out.jsonl, inputs: [pass]}
""", "bad.yaml")
p = inkt.run([inkt.INKFLOW, "validate", bad])
err = p.stderr.decode()
inkt.check(p.returncode == 2, "validate exits 2 on a bad config")
inkt.check("bad.yaml:3:" in err and "format" in err, "unknown key reported with line and a suggestion: %r" % err)
inkt.check("bad.yaml:5:" in err and "nowhere" in err, "dangling input reported with its line")
p = inkt.run([inkt.INKFLOW, "run", bad])
inkt.check(p.returncode == 2, "run refuses a bad config with exit 2")
p = inkt.run([inkt.INKFLOW, "help"])
inkt.check(p.returncode == 0 and b"passthrough" in p.stdout and b"zmq" in p.stdout, "help lists the node types")
p = inkt.run([inkt.INKFLOW, "help", "zmq"])
inkt.check(p.returncode == 0 and b"max_message_bytes" in p.stdout, "help zmq lists its keys")
p = inkt.run([inkt.INKFLOW, "help", "nosuch"])
inkt.check(p.returncode == 2, "help of an unknown type exits 2")
p = inkt.run([inkt.INKFLOW, "frobnicate"])
inkt.check(p.returncode == 2, "unknown command exits 2")
inkt.finish()

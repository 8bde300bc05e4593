"""Restore compatibility by structure, through the real binary (docs/state.md,
"What a restore compares").

A keyed ecdf (KLL per key) and an rls_sketch read a 20,000-record file into
two file sinks, with a snapshot every 2,000 records. Checks:
- a run killed with SIGKILL mid-stream and restored with a config that
  differs only in what does not shape state (comments, layout and key order,
  the source's replay rate, the snapshot period, engine.http, one sink's
  format) exits 0 and continues: the unchanged sink is byte for byte the
  uninterrupted run's; the other holds the uninterrupted run's records up to
  the snapshot in the old format and the rest in the new one, none lost or
  doubled; `validate --restore` says so beforehand, while the graph runs;
- a state-shaping key changed (an operator's k, a nested kernel.sigma,
  engine.seed), a node renamed, added or removed, a node's type or inputs
  changed: refused with exit 2 and one message naming the node, the key and
  both values (`validate --restore` too); the snapshot and the outputs
  untouched; the config with only a comment added still restores."""
import csv
import hashlib
import io
import json
import os
import random
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402

N = 20000

GRAPH = """
engine:
  seed: 7
  snapshot: {dir: snap, every: 0, every_records: 2000}
sources:
  src: {type: file, path: in.jsonl%(rate)s}
operators:
  cdf: {type: ecdf, inputs: [src], mode: kll, k: 64, key_by: key, max_keys: 8}
  rls:
    type: rls_sketch
    inputs: [src]
    dim: 1
    kernel: {type: gaussian, sigma: 0.5}
    gamma: 1.0
    qbar: 4
    max_dict: 16
    predict: true
sinks:
  out: {type: file, path: out.jsonl, inputs: [cdf]}
  out2: {type: file, path: out2.jsonl, inputs: [rls]}
"""

# The same graph as the restore sees it: comments, other layout and key
# order, no replay rate, another snapshot period, http on, out2 in CSV.
EDITED = """
# edited after the snapshot: nothing here shapes the state
engine:
  snapshot:
    every_records: 5000   # was 2000
    every: 0
    dir: snap
  http: {listen: "127.0.0.1:%(port)d"}
  seed: 7
sources:
  src: {path: in.jsonl, type: file}
operators:
  cdf: {max_keys: 8, key_by: key, k: 64, mode: kll, inputs: [src], type: ecdf}
  rls: {type: rls_sketch, inputs: [src], predict: true, max_dict: 16, qbar: 4,
        gamma: 1, kernel: {sigma: 0.50, type: gaussian}, dim: 1}
sinks:
  out2: {type: file, path: out2.jsonl, inputs: [rls], format: csv}
  out: {type: file, path: out.jsonl, inputs: [cdf]}
"""

base = inkt.tmpdir()
data = os.path.join(base, "in.jsonl")
r = random.Random(3)
with open(data, "w") as f:
    for i in range(N):
        f.write(json.dumps({"t": i, "key": "k%d" % r.randrange(6), "x": [r.random()],
                            "y": r.random()}) + "\n")


def workdir(name, text):
    d = os.path.join(base, name)
    os.makedirs(os.path.join(d, "snap"))
    os.symlink(data, os.path.join(d, "in.jsonl"))
    return d, inkt.write_config(d, text)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def sha(path):
    return hashlib.sha256(read(path)).hexdigest()


def restored_at(stderr):
    m = re.search(r"restored from \S+ \((\d+) source records in\)", stderr)
    return int(m.group(1)) if m else -1


# --- the reference: one uninterrupted run ----------------------------------------------
ref_dir, ref_cfg = workdir("ref", GRAPH % {"rate": ""})
p = inkt.run([inkt.INKFLOW, "run", ref_cfg], timeout=120)
inkt.check(p.returncode == 0, "uninterrupted run exits 0")
ref = read(os.path.join(ref_dir, "out.jsonl"))
ref2 = read(os.path.join(ref_dir, "out2.jsonl")).decode().splitlines()
inkt.check(len(ref2) == N, "the reference's out2 holds %d records" % len(ref2))

# --- killed mid-stream, restored with an edited config ------------------------------------
kill_dir, kill_cfg = workdir("kill", GRAPH % {"rate": ", rate: 10000"})
out, out2 = os.path.join(kill_dir, "out.jsonl"), os.path.join(kill_dir, "out2.jsonl")
proc = inkt.start([inkt.INKFLOW, "run", kill_cfg])
# past the first snapshots, well before the end (2 s of input at this rate)
inkt.wait_for(lambda: os.path.exists(out) and os.path.getsize(out) >= len(ref) * 0.4
              or proc.poll() is not None, timeout=60, step=0.005)
alive = proc.poll() is None
# the config edited under the running process (which read it at start);
# validate --restore reads the snapshot the process keeps writing (no lock
# taken): the edited config can restore it
with open(kill_cfg, "w") as f:
    f.write(EDITED % {"port": inkt.free_port()})
v = inkt.run([inkt.INKFLOW, "validate", kill_cfg, "--restore"], timeout=60)
inkt.check(v.returncode == 0 and b"can restore" in v.stdout and proc.poll() is None,
           "validate --restore while the graph runs: the edited config can restore its snapshot "
           "(rc %d: %s)" % (v.returncode, (v.stdout + v.stderr).decode().strip()))
if alive:
    proc.send_signal(signal.SIGKILL)
proc.communicate(timeout=30)
inkt.check(alive, "killed with SIGKILL mid-stream")
with open(kill_cfg, "w") as f:  # the same, with a port free now
    f.write(EDITED % {"port": inkt.free_port()})
p = inkt.run([inkt.INKFLOW, "run", kill_cfg, "--restore"], timeout=120)
err = p.stderr.decode()
k = restored_at(err)
inkt.check(p.returncode == 0 and 0 < k < N and k % 2000 == 0,
           "--restore with comments, key order, rate, snapshot period, http and a sink's "
           "format changed: exit 0, restored at %d records (rc %d: %s)" %
           (k, p.returncode, err.strip().splitlines()[-1] if err else ""))
inkt.check(read(out) == ref, "the unchanged sink is byte-identical to the uninterrupted run")
lines = read(out2).decode().splitlines()
head = 0
while head < len(lines) and lines[head].startswith("{"):
    head += 1
rows = list(csv.DictReader(io.StringIO("\n".join(lines[head:]) + "\n")))
inkt.check(lines[:head] == ref2[:head] and head == k,
           "the re-formatted sink keeps the uninterrupted run's first %d records (JSON Lines), "
           "up to the snapshot (%d)" % (head, k))
want = [json.loads(x) for x in ref2[head:]]
same = len(rows) == len(want) and all(
    int(a["t"]) == b["t"] and abs(float(a["yhat"]) - b["yhat"]) <= 1e-9 * max(1, abs(b["yhat"]))
    for a, b in zip(rows, want))
inkt.check(same, "... and the rest as CSV: %d rows, the uninterrupted run's %d records, same t "
           "and yhat" % (len(rows), len(want)))

# --- refusals: exit 2, one message naming node, key and values; nothing touched -------------
bad_dir, bad_cfg = workdir("bad", GRAPH % {"rate": ""})
p = inkt.run([inkt.INKFLOW, "run", bad_cfg], timeout=120)
inkt.check(p.returncode == 0, "a run to refuse restores of")
snap = os.path.join(bad_dir, "snap", "graph.snap")
sums = [sha(snap), sha(os.path.join(bad_dir, "out.jsonl")),
        sha(os.path.join(bad_dir, "out2.jsonl"))]
original = GRAPH % {"rate": ""}


def refused(label, text, want):
    with open(bad_cfg, "w") as f:
        f.write(text)
    p = inkt.run([inkt.INKFLOW, "run", bad_cfg, "--restore"], timeout=60)
    err = p.stderr.decode().strip()
    last = err.splitlines()[-1] if err else ""
    inkt.check(p.returncode == 2 and all(w in last for w in want),
               "%s: refused with exit 2 naming %s (rc %d: %s)" %
               (label, " / ".join(want), p.returncode, last))
    v = inkt.run([inkt.INKFLOW, "validate", bad_cfg, "--restore"], timeout=60)
    verr = v.stderr.decode()
    inkt.check(v.returncode == 2 and all(w in verr for w in want),
               "%s: validate --restore says the same, exit 2" % label)
    inkt.check([sha(snap), sha(os.path.join(bad_dir, "out.jsonl")),
                sha(os.path.join(bad_dir, "out2.jsonl"))] == sums,
               "%s: snapshot and outputs unchanged" % label)


refused("an operator's k", original.replace("k: 64", "k: 32"),
        ["taken with a different config", "node 'cdf' (ecdf): k is 64 in the snapshot, "
         "32 in the config"])
refused("a nested key", original.replace("sigma: 0.5", "sigma: 0.25"),
        ["node 'rls' (rls_sketch): kernel.sigma is 0.5 in the snapshot, 0.25 in the config"])
refused("engine.seed", original.replace("seed: 7", "seed: 8"),
        ["engine: seed is 7 in the snapshot, 8 in the config"])
refused("two keys at once", original.replace("k: 64", "k: 32").replace("gamma: 1.0", "gamma: 2"),
        ["k is 64 in the snapshot, 32 in the config",
         "gamma is 1 in the snapshot, 2 in the config"])
refused("a node renamed", original.replace("  cdf:", "  cdf2:").replace("[cdf]", "[cdf2]"),
        ["node 'cdf' (ecdf) of the snapshot is not in the config, which has 'cdf2' (ecdf) "
         "instead"])
refused("a sink added", original + "  out3: {type: file, path: out3.jsonl, inputs: [cdf]}\n",
        ["node 'out3' (sink file) is not in the snapshot (added: its output would start "
         "mid-stream)"])
refused("a sink removed",
        original.replace("  out2: {type: file, path: out2.jsonl, inputs: [rls]}\n", ""),
        ["node 'out2' (sink file) of the snapshot is not in the config (removed)"])
refused("a node's type", original.replace(
    "type: ecdf, inputs: [src], mode: kll, k: 64, key_by: key, max_keys: 8",
    "type: passthrough, inputs: [src]"),
    ["node 'cdf': operator ecdf in the snapshot, operator passthrough in the config"])
refused("a node's inputs", original.replace("inputs: [cdf]}", "inputs: [cdf, rls]}"),
        ["node 'out': inputs [cdf] in the snapshot, [cdf, rls] in the config"])

with open(bad_cfg, "w") as f:
    f.write("# only a comment added\n" + original)
p = inkt.run([inkt.INKFLOW, "run", bad_cfg, "--restore"], timeout=60)
inkt.check(p.returncode == 0 and restored_at(p.stderr.decode()) == N and
           sha(os.path.join(bad_dir, "out.jsonl")) == sums[1],
           "after all that, the snapshot restores with a comment added; nothing to add")
inkt.finish()

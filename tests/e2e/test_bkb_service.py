"""End to end: the bkb operator as an ask/tell service behind a router socket
(configs/bandit.yaml with a free port), driven by `inkflow query`; and the
streaming form over a CSV of rewards."""
import math
import os
import signal

import inkt

ROOT = inkt.ROOT
d = inkt.tmpdir()

v = inkt.run([inkt.INKFLOW, "validate", os.path.join(ROOT, "configs", "bandit.yaml")])
inkt.check(v.returncode == 0, "configs/bandit.yaml validates: %s" % v.stdout.decode().strip())

ep = inkt.endpoint()
with open(os.path.join(ROOT, "configs", "bandit.yaml")) as f:
    text = f.read().replace("tcp://127.0.0.1:5560", ep)
cfg = inkt.write_config(d, text, "bandit.yaml")
graph = inkt.start([inkt.INKFLOW, "run", cfg])


def reward(x):
    # a smooth bump with its maximum 1.0 at (0.7, 0.3)
    return math.exp(-((x[0] - 0.7) ** 2 + (x[1] - 0.3) ** 2) / 0.08)


inkt.wait_for(lambda: inkt.query(ep, {"op": "predict", "arm": 0})[0] == 0, timeout=20)

# Concurrent workers: asks without tells get distinct arms.
asked = []
for _ in range(6):
    rc, r = inkt.query(ep, {"op": "ask"})
    if rc == 0:
        asked.append((r["arm"], r["x"]))
arms = [a for a, _ in asked]
inkt.check(len(arms) == 6 and len(set(arms)) == 6, "6 pending asks, 6 distinct arms: %s" % arms)
rc, r = inkt.query(ep, {"op": "ask", "n": 4})
batch = r.get("arms", [])
inkt.check(rc == 0 and len(batch) == 4 and not set(batch) & set(arms),
           "ask n=4 returns 4 arms not already pending: %s" % batch)
for a, x in asked:
    inkt.query(ep, {"op": "tell", "arm": a, "y": reward(x)})
for a, x in zip(batch, r.get("xs", [])):
    inkt.query(ep, {"op": "tell", "arm": a, "y": reward(x)})

# Bad requests: error replies, the service goes on.
rc1, e1 = inkt.query(ep, {"op": "tell", "arm": 100000, "y": 1})
rc2, e2 = inkt.query(ep, {"op": "tell", "arm": arms[0], "y": 1})  # already told
rc3, e3 = inkt.query(ep, {"op": "ask", "n": -3})
rc4, e4 = inkt.query(ep, {"op": "frobnicate"})
inkt.check(rc1 != 0 and "out of range" in e1.get("error", ""), "tell out of range: %s" % e1)
inkt.check(rc2 != 0 and "not waiting" in e2.get("error", ""), "tell twice: %s" % e2)
inkt.check(rc3 != 0 and "error" in e3, "ask n=-3: %s" % e3)
inkt.check(rc4 != 0 and "unknown op" in e4.get("error", ""), "unknown op: %s" % e4)

# The optimisation loop finds the bump.
best = 0.0
for _ in range(40):
    rc, r = inkt.query(ep, {"op": "ask"})
    if rc != 0:
        break
    y = reward(r["x"])
    best = max(best, y)
    inkt.query(ep, {"op": "tell", "arm": r["arm"], "y": y})
inkt.check(best > 0.9, "best reward after 50 evaluations: %.3f (max 1)" % best)

graph.send_signal(signal.SIGTERM)
try:
    _, err = graph.communicate(timeout=30)
except Exception:
    err = b""
inkt.check(graph.returncode == 0, "service exits 0 on SIGTERM")
row = inkt.summary_row(err.decode(), "tuner")
inkt.check(row is not None and row["rejected"] == 4, "4 rejected requests counted: %s" % row)

# Streaming: rewards in, one suggestion out per reward plus the start one.
with open(os.path.join(d, "rewards.csv"), "w") as f:
    f.write("arm,y\n3,0.5\n10,0.7\n50,0.1\n")
scfg = inkt.write_config(d, """
sources:
  rewards: {type: file, path: rewards.csv, format: csv}
operators:
  bandit: {type: bkb, inputs: [rewards], arms: {grid: {lo: [0, 0], hi: [1, 1], n: 30}},
           kernel: {type: gaussian, sigma: 0.2}, lambda: 0.01, noise_var: 0.01}
sinks:
  out: {type: file, path: out.jsonl, format: jsonl, inputs: [bandit]}
""", "stream.yaml")
s = inkt.run([inkt.INKFLOW, "run", scfg])
out = inkt.read_jsonl(os.path.join(d, "out.jsonl")) if s.returncode == 0 else []
inkt.check(len(out) == 4 and [o["round"] for o in out] == [0, 1, 2, 3],
           "streaming: 3 rewards give 4 suggestions (rounds %s)" % [o.get("round") for o in out])
inkt.check(all(len(o["x"]) == 2 and "ucb" in o and "sigma" in o for o in out),
           "suggestions carry x, sigma, ucb")
inkt.check(out and out[-1]["dict"] >= 1, "dictionary non-empty after rewards")

inkt.finish()

"""End to end: examples/bandit_client.py optimises its test function through
the bkb service of configs/bandit.yaml (free port) with 4 parallel workers and
a short budget, and gets near the optimum of the service's arm grid."""
import math
import os
import re
import signal
import sys

import inkt

ROOT = inkt.ROOT
d = inkt.tmpdir()
ep = inkt.endpoint()
with open(os.path.join(ROOT, "configs", "bandit.yaml")) as f:
    text = f.read()
inkt.check("tcp://127.0.0.1:5560" in text and "n: 40" in text, "configs/bandit.yaml: port 5560, 40x40 grid")
cfg = inkt.write_config(d, text.replace("tcp://127.0.0.1:5560", ep), "bandit.yaml")
graph = inkt.start([inkt.INKFLOW, "run", cfg], stdout=open(os.path.join(d, "log.jsonl"), "w"))
inkt.wait_for(lambda: inkt.run([inkt.INKFLOW, "query", ep, '{"op": "predict", "arm": 0}'],
                               timeout=30).returncode == 0, timeout=20)

sys.path.insert(0, os.path.join(ROOT, "examples"))
import bandit_client  # noqa: E402  (the objective, to compute the optimum over the grid)

grid = [i / 39 for i in range(40)]
opt = max(bandit_client.objective((u, v)) for u in grid for v in grid)
decoy = bandit_client.objective((0.25, 0.75))

BUDGET, WORKERS = 200, 4
c = inkt.run([sys.executable, os.path.join(ROOT, "examples", "bandit_client.py"), "--endpoint", ep,
              "--workers", str(WORKERS), "--budget", str(BUDGET), "--cost", "0.005"], timeout=120)
out = c.stdout.decode()
print(out.strip())
print(c.stderr.decode().strip())
inkt.check(c.returncode == 0, "client exits 0")
m = re.search(r"best y = ([-0-9.e]+) at x = \[([^\]]*)\] \(arm (\d+)\), (\d+) evaluations by (\d+) workers",
              out)
inkt.check(m is not None, "client prints the best point")
if m:
    best = float(m.group(1))
    x = [float(v) for v in m.group(2).split(",")]
    inkt.check(int(m.group(4)) == BUDGET and int(m.group(5)) == WORKERS,
               "%s evaluations by %s workers" % (m.group(4), m.group(5)))
    inkt.check(best >= opt - 0.05 and best > decoy + 0.1,
               "best %.4f within 0.05 of the grid optimum %.4f (local maximum %.2f)" % (best, opt, decoy))
    inkt.check(math.hypot(x[0] - 0.7, x[1] - 0.3) < 0.05, "best point %s near (0.7, 0.3)" % x)
    arm = int(m.group(3))
    inkt.check(abs(x[0] - grid[arm % 40]) < 1e-5 and abs(x[1] - grid[arm // 40]) < 1e-5,
               "best point is grid arm %d" % arm)

graph.send_signal(signal.SIGTERM)
try:
    _, err = graph.communicate(timeout=30)
except Exception:
    err = b""
inkt.check(graph.returncode == 0, "service exits 0 on SIGTERM")
row = inkt.summary_row(err.decode(), "tuner")
# one predict (readiness) plus an ask and a tell per evaluation, none refused
inkt.check(row is not None and row["rejected"] == 0 and row["in"] >= 2 * BUDGET,
           "service: %s requests, none rejected: %s" % (2 * BUDGET, row))
log = inkt.read_jsonl(os.path.join(d, "log.jsonl"))
asks = [r for r in log if r.get("op") == "ask"]
tells = [r for r in log if r.get("op") == "tell"]
inkt.check(len(asks) == BUDGET and len(tells) == BUDGET, "log: %d asks, %d tells" % (len(asks), len(tells)))
# pending arms are never handed out twice: between an ask and its tell no other ask gets that arm
pending, dup = set(), 0
for r in log:
    if r.get("op") == "ask":
        dup += r["arm"] in pending
        pending.add(r["arm"])
    elif r.get("op") == "tell":
        pending.discard(r["arm"])
inkt.check(dup == 0, "no arm asked twice while pending (%d)" % dup)
inkt.finish()

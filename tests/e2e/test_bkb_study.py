"""End to end: bkb's service operations through the Python package
(python/inkflow) and the real binary:
- `best` is the best told value, with the posterior there and the arm of
  highest posterior mean;
- a worker killed (SIGKILL, by pid) after `ask` has its arm released by
  `fail` from another client, and by `pending_timeout` (counted on /metrics);
- `trials` pages through a history bounded by max_trials;
- with key_by, `ask` on a new key starts its study, beyond max_keys it is
  refused clearly;
- SIGTERM + --restore keeps pending arms, trials and best;
- named search spaces (log, int, choice) round-trip: params in every reply,
  tell and fail by params, x is the scaled grid the kernel sees."""
import math
import os
import signal
import subprocess
import sys
import urllib.request

import inkt

sys.path.insert(0, os.path.join(inkt.ROOT, "python"))
import inkflow  # noqa: E402

d = inkt.tmpdir()
ENV = dict(os.environ, PYTHONPATH=os.path.join(inkt.ROOT, "python"))


def reward(x):
    return 1.0 - (x[0] - 0.7) ** 2 - (x[1] - 0.3) ** 2


def up(ep, key=None):
    def ready():
        try:
            inkflow.request(ep, {"op": "trials", "limit": 0, **({"key": key} if key else {})},
                            timeout=1)
            return True
        except inkflow.Timeout:
            return False
        except inkflow.ServiceError:  # unknown key: the service is up
            return True
    return inkt.wait_for(ready, timeout=30)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=60)
    except Exception:
        err = b""
    return p.returncode, err.decode()


WORKER = """
import sys, time, inkflow
s = inkflow.Study(sys.argv[1], key=sys.argv[2] if len(sys.argv) > 2 else None)
t = s.ask()
print(t.arm, flush=True)
time.sleep(3600)  # the evaluation that never ends: killed by the test
"""


def killed_worker(ep, key=None):
    """A worker process that asks and is then killed: returns its arm."""
    p = inkt.start([sys.executable, "-c", WORKER, ep] + ([key] if key else []), env=ENV)
    line = p.stdout.readline().decode().strip()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    return int(line) if line else -1


# --- unkeyed service: best, fail, pending_timeout, trials ----------------------------
ep, port = inkt.endpoint(), inkt.free_port()
cfg = inkt.write_config(d, """
engine:
  http: {listen: "127.0.0.1:%d"}
sources:
  api: {type: zmq, socket: router, bind: "%s", reply_from: tuner}
operators:
  tuner:
    type: bkb
    inputs: [api]
    arms: {grid: {lo: [0, 0], hi: [1, 1], n: 20}}
    kernel: {type: gaussian, sigma: 0.2}
    lambda: 0.01
    noise_var: 0.01
    pending_timeout: 1s
    max_trials: 8
sinks:
  log: {type: file, path: svc.jsonl, format: jsonl, inputs: [tuner]}
""" % (port, ep), "svc.yaml")
g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(up(ep), "service up")
s = inkflow.Study(ep, timeout=10)
try:
    s.best()
    inkt.check(False, "best before any tell is refused")
except inkflow.ServiceError as e:
    inkt.check("no trial has been told" in str(e), "best before any tell: %s" % e)
told = []
for _ in range(10):
    t = s.ask()
    y = reward(t.x)
    s.tell(t, y)
    told.append((y, t.arm))
b = s.best()
ybest, abest = max(told)
inkt.check(b.value == ybest and b.arm == abest, "best = the best told value %.6f (arm %d): %.6f arm %d"
           % (ybest, abest, b.value, b.arm))
inkt.check(b.sigma >= 0 and b.mu == b.mu and 0 <= b.mean_arm < 400 and len(b.mean_x) == 2
           and b.told == 10, "best has mu %.3f, sigma %.3f there, mean arm %d (mu %.3f)"
           % (b.mu, b.sigma, b.mean_arm, b.mean_mu))
mus = [s.predict(a)["mu"] for a in (b.arm, b.mean_arm)]
inkt.check(b.mean_mu == mus[1] and b.mean_mu >= mus[0], "mean_arm's mu is predict's, >= best's")

# a worker killed after ask: released by fail from another client
arm = killed_worker(ep)
pend = [p["arm"] for p in s.pending()]
inkt.check(arm >= 0 and pend == [arm], "killed worker's arm %d is pending: %s" % (arm, pend))
r = s.fail(arm)
inkt.check(r["arm"] == arm and r["pending"] == 0, "fail releases it: %s" % r)
try:
    s.tell(arm, 0.5)
    inkt.check(False, "tell after fail is refused")
except inkflow.ServiceError as e:
    inkt.check("not waiting" in str(e), "tell after fail refused: %s" % e)
try:
    s.fail(arm)
    inkt.check(False, "fail twice is refused")
except inkflow.ServiceError as e:
    inkt.check("not pending" in str(e), "fail twice refused: %s" % e)

# ... and by pending_timeout (1 s): expired at a request after the deadline
arm2 = killed_worker(ep)
inkt.check(arm2 >= 0 and [p["arm"] for p in s.pending()] == [arm2], "second killed worker's arm "
           "%d pending" % arm2)
inkt.check(inkt.wait_for(lambda: s.pending() == [], timeout=30, step=0.2),
           "its arm is released by pending_timeout")
hist = s.trials()
inkt.check(hist[-1]["arm"] == arm2 and hist[-1]["state"] == "expired" and hist[-1]["duration"] > 1,
           "trials: last is arm %d, expired after %.2f s" % (hist[-1]["arm"], hist[-1]["duration"]))


def metric(name):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + "{") and 'node="tuner"' in line:
            return float(line.split()[-1])
    return None


inkt.check(inkt.wait_for(lambda: metric("inkflow_operator_pending_expired") == 1, timeout=10),
           "/metrics: inkflow_operator_pending_expired 1 (%s)" % metric("inkflow_operator_pending_expired"))

# history: 12 finished, max_trials 8 keeps the last 8, paged
r = s.call("trials", start=0, limit=3)
inkt.check(r["total"] == 12 and r["first"] == 4 and r["next"] == 7 and len(r["trials"]) == 3
           and r["trials"][0]["index"] == 4, "trials page: total 12, first kept 4, next 7")
allh = s.trials(page=3)
inkt.check([h["index"] for h in allh] == list(range(4, 12)),
           "s.trials() pages through the 8 kept (%s)" % [h["index"] for h in allh])
states = [h["state"] for h in allh]
inkt.check(states == ["told"] * 6 + ["failed", "expired"] and allh[0]["y"] == told[4][0],
           "states and values as told: %s" % states)
inkt.check(s.best().value == ybest, "best is kept past the history bound")
try:
    s.call("trials", limit=1000)
    inkt.check(False, "limit over the page size refused")
except inkflow.ServiceError as e:
    inkt.check("limit" in str(e), "trials limit 1000: %s" % e)
s.close()
rc, err = stop(g)
inkt.check(rc == 0, "service exits 0")

# --- keyed studies: ask creates the key; restore keeps pending, trials, best -----------
ep = inkt.endpoint()
kcfg = inkt.write_config(d, """
engine:
  snapshot: {dir: snap, every: 0}
sources:
  api: {type: zmq, socket: router, bind: "%s", reply_from: tuner}
operators:
  tuner:
    type: bkb
    inputs: [api]
    key_by: key
    max_keys: 2
    arms: {grid: {lo: [0, 0], hi: [1, 1], n: 15}}
    kernel: {type: gaussian, sigma: 0.2}
    lambda: 0.01
    noise_var: 0.01
sinks:
  log: {type: file, path: keyed.jsonl, format: jsonl, inputs: [tuner]}
""" % ep, "keyed.yaml")
g = inkt.start([inkt.INKFLOW, "run", kcfg], cwd=d)
inkt.check(up(ep), "keyed service up")
br = inkflow.Study(ep, key="branin")
t = br.ask()
inkt.check(0 <= t.arm < 225, "ask on a new key starts its study (arm %d)" % t.arm)
br.tell(t, reward(t.x))
inkflow.Study(ep, key="hartmann").ask()
try:
    inkflow.Study(ep, key="third").ask()
    inkt.check(False, "a third key is refused")
except inkflow.ServiceError as e:
    inkt.check("max_keys" in str(e) and "third" in str(e), "third key: %s" % e)
try:
    inkflow.Study(ep, key="nokey").best()
    inkt.check(False, "best on an unknown key is refused")
except inkflow.ServiceError as e:
    inkt.check("unknown key" in str(e), "best on an unknown key: %s" % e)
for _ in range(6):
    t = br.ask()
    br.tell(t, reward(t.x))
failed = br.ask()
br.fail(failed)
pending_arms = sorted(br.ask().arm for _ in range(2))
before = (br.trials(), sorted(p["arm"] for p in br.pending()), br.best())
rc, err = stop(g)
inkt.check(rc == 0 and os.listdir(os.path.join(d, "snap")), "SIGTERM: final snapshot written")
g = inkt.start([inkt.INKFLOW, "run", kcfg, "--restore"], cwd=d)
inkt.check(up(ep, "branin"), "restored service up")
after = (br.trials(), sorted(p["arm"] for p in br.pending()), br.best())
inkt.check(after[1] == pending_arms == before[1], "restore keeps the pending arms %s" % after[1])
inkt.check(after[0] == before[0] and len(after[0]) == 8, "restore keeps the 8 trials")
inkt.check(after[2].value == before[2].value and after[2].arm == before[2].arm
           and after[2].mu == before[2].mu, "restore keeps best (%.6f, arm %d)"
           % (after[2].value, after[2].arm))
r = br.tell(pending_arms[0], 0.25)
inkt.check(r["pulls"] == 8, "a restored pending arm can be told: %s" % r)
try:
    br.ask() and br.ask()
    inkt.check(True, "restored study asks on")
except inkflow.ServiceError as e:
    inkt.check(False, "restored study asks on: %s" % e)
br.close()
rc, err = stop(g)
inkt.check(rc == 0, "restored service exits 0")

# --- named search space -------------------------------------------------------------
ep = inkt.endpoint()
SPACE = "{lr: {log: [1e-5, 1e-1], n: 20}, layers: {int: [1, 8]}, act: {choice: [relu, tanh, gelu]}}"
scfg = inkt.write_config(d, """
sources:
  api: {type: zmq, socket: router, bind: "%s", reply_from: tuner}
operators:
  tuner:
    type: bkb
    inputs: [api]
    arms: {space: %s}
    kernel: {type: gaussian, sigma: 0.3}
    lambda: 0.01
    noise_var: 0.01
sinks:
  log: {type: file, path: space.jsonl, format: jsonl, inputs: [tuner]}
""" % (ep, SPACE), "space.yaml")
v = inkt.run([inkt.INKFLOW, "validate", scfg])
inkt.check(v.returncode == 0 and "ok" in v.stdout.decode(), "space config validates")
for bad, why in (("{lr: {log: [0, 1]}}", "log needs 0 < lo"), ("{a: {int: [1, 3], n: 5}}", "holds 3"),
                 ("{a: {lin: [0, 1], step: 2}}", "unknown key 'step'"),
                 ("{a: {choice: [x, x]}}", "repeats"), ("[1, 2]", "expected a map")):
    b = inkt.write_config(d, open(scfg).read().replace(SPACE, bad), "bad.yaml")
    r = inkt.run([inkt.INKFLOW, "validate", b])
    inkt.check(r.returncode == 2 and why in r.stderr.decode(), "space %s refused: %s"
               % (bad, r.stderr.decode().strip().splitlines()[0] if r.stderr else ""))
g = inkt.start([inkt.INKFLOW, "run", scfg], cwd=d)
inkt.check(up(ep), "space service up")
sp = inkflow.Study(ep)
LR = [math.exp(math.log(1e-5) + (math.log(1e-1) - math.log(1e-5)) * k / 19) for k in range(20)]


def consistent(t):
    p, x = t.params, t.x
    k = min(range(20), key=lambda i: abs(math.log(LR[i]) - math.log(p["lr"])))
    onehot = [0.0] * 3
    onehot[["relu", "tanh", "gelu"].index(p["act"])] = math.sqrt(0.5)
    return (set(p) == {"lr", "layers", "act"} and abs(p["lr"] / LR[k] - 1) < 1e-12
            and isinstance(p["layers"], int) and 1 <= p["layers"] <= 8
            and len(x) == 5 and abs(x[0] - k / 19) < 1e-12 and abs(x[1] - (p["layers"] - 1) / 7) < 1e-12
            and all(abs(a - b) < 1e-12 for a, b in zip(x[2:], onehot)))


def objective(p):
    return -(math.log10(p["lr"]) + 3) ** 2 - 0.1 * (p["layers"] - 4) ** 2 + (p["act"] == "gelu")


ts = [sp.ask() for _ in range(4)] + sp.ask(n=3)
inkt.check(all(consistent(t) for t in ts) and len({t.arm for t in ts}) == 7,
           "7 asks (4 + n=3): params and x agree (lr on the log grid, layers int, act one-hot): %s"
           % ts[0].params)
vals = {}
for t in ts[:-1]:
    y = objective(t.params)
    sp.tell(dict(t.params), y)  # by params, not by arm
    vals[t.arm] = y
r = sp.fail(dict(ts[-1].params))
inkt.check(r["arm"] == ts[-1].arm, "fail by params releases arm %d" % ts[-1].arm)
for _ in range(20):
    t = sp.ask()
    vals[t.arm] = objective(t.params)
    sp.tell(t, vals[t.arm])
b = sp.best()
inkt.check(b.value == max(vals.values()) and b.params and objective(b.params) == b.value
           and set(b.mean_params) == {"lr", "layers", "act"},
           "best: params %s, value %.4f = the best told" % (b.params, b.value))
h = sp.trials()
inkt.check(len(h) == 27 and all(objective(e["params"]) == e["y"] for e in h if e["state"] == "told")
           and h[6]["state"] == "failed" and h[6]["params"] == ts[-1].params,
           "trials carry params (26 told, 1 failed)")
for bad, why in (({"lr": 0.5, "layers": 2, "act": "relu"}, "not on the space's grid"),
                 ({"lr": 1e-5, "layers": 2, "act": "selu"}, "not one of its 3 choices"),
                 ({"lr": 1e-5, "layers": 2}, "'act' is missing"),
                 ({"lr": 1e-5, "layers": 2, "act": "relu", "x": 1}, "unknown parameter 'x'")):
    try:
        sp.tell(bad, 1.0)
        inkt.check(False, "tell %s refused" % bad)
    except inkflow.ServiceError as e:
        inkt.check(why in str(e), "tell %s: %s" % (bad, e))
sp.close()
rc, err = stop(g)
inkt.check(rc == 0, "space service exits 0")
inkt.finish()

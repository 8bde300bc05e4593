"""End to end: inkflow.optuna.InkflowSampler drives an Optuna study from the
real bkb service (named space from inkflow.optuna.space_yaml), 2 worker
threads: every parameter comes from the service's asks, completed trials are
told back (negated for a minimised study), failed and pruned trials are
released, and the service's best is Optuna's best. Needs python3-optuna."""
import math
import os
import sys

import inkt

sys.path.insert(0, os.path.join(inkt.ROOT, "python"))
try:
    import optuna
except ImportError:
    print("python3-optuna is not installed (./dev test installs it)")
    sys.exit(1)
from optuna.distributions import (CategoricalDistribution, FloatDistribution,  # noqa: E402
                                  IntDistribution)

import inkflow  # noqa: E402
import inkflow.optuna  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)
D = {"lr": FloatDistribution(1e-4, 1.0, log=True), "depth": IntDistribution(1, 6),
     "act": CategoricalDistribution(["relu", "tanh"])}
space = inkflow.optuna.space_yaml(D, n=12)
inkt.check(space == '{lr: {log: [0.0001, 1.0], n: 12}, depth: {int: [1, 6]}, act: {choice: ["relu", '
           '"tanh"]}}', "space_yaml: %s" % space)
d = inkt.tmpdir()
ep = inkt.endpoint()
cfg = inkt.write_config(d, """
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
  log: {type: file, path: log.jsonl, format: jsonl, inputs: [tuner]}
""" % (ep, space))
g = inkt.start([inkt.INKFLOW, "run", cfg])


def up():
    try:
        inkflow.request(ep, {"op": "pending", "limit": 0}, timeout=1)
        return True
    except inkflow.Timeout:
        return False


inkt.check(inkt.wait_for(up, timeout=30), "service up")
LR = [math.exp(math.log(1e-4) + math.log(1e4) * k / 11) for k in range(12)]
seen = []


def loss(trial):
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    depth = trial.suggest_int("depth", 1, 6)
    act = trial.suggest_categorical("act", ["relu", "tanh"])
    seen.append((lr, depth, act))
    if trial.number == 3:
        raise RuntimeError("this evaluation crashed")
    if trial.number == 5:
        raise optuna.TrialPruned()
    return (math.log10(lr) + 2) ** 2 + 0.2 * (depth - 3) ** 2 + (0.5 if act == "relu" else 0)


sampler = inkflow.optuna.InkflowSampler(ep)
study = optuna.create_study(direction="minimize", sampler=sampler)
study.optimize(loss, n_trials=30, n_jobs=2, catch=(RuntimeError,))
states = [t.state for t in study.trials]
TS = optuna.trial.TrialState
inkt.check(len(states) == 30 and states.count(TS.FAIL) == 1 and states.count(TS.PRUNED) == 1,
           "30 trials: 28 complete, 1 failed, 1 pruned")
inkt.check(all(any(abs(lr / g - 1) < 1e-12 for g in LR) and 1 <= dp <= 6 and a in ("relu", "tanh")
               for lr, dp, a in seen), "every suggestion is a grid point of the service's space")
h = inkflow.Study(ep).trials()
told = [e for e in h if e["state"] == "told"]
inkt.check(len(h) == 30 and len(told) == 28 and sum(e["state"] == "failed" for e in h) == 2,
           "service history: 28 told, 2 released (failed + pruned)")
inkt.check(inkflow.Study(ep).pending() == [], "no arm left pending")
b = inkflow.Study(ep).best()
inkt.check(b.value == -study.best_value and b.params["act"] == study.best_params["act"]
           and b.params["depth"] == study.best_params["depth"]
           and abs(b.params["lr"] / study.best_params["lr"] - 1) < 1e-12,
           "service best (maximising -loss) = Optuna's best %.4f at %s" % (study.best_value,
                                                                         study.best_params))
sampler.close()
g.terminate()
g.wait(timeout=30)
inkt.check(g.returncode == 0, "service exits 0")
inkt.finish()

#!/usr/bin/python3
"""Tune a scikit-learn model with Optuna, drawing the trials from inkflow's
bkb service (python/inkflow/optuna.py), 4 workers in parallel.

    /usr/bin/python3 examples/optuna_sklearn.py            # starts build/inkflow itself
    /usr/bin/python3 examples/optuna_sklearn.py --endpoint tcp://127.0.0.1:5560  # a running service

The model: an RBF support vector classifier on scikit-learn's digits
(C, gamma on log scales, class_weight a category; the first 900 images),
scored by 3-fold
cross-validated accuracy. The service's search space is written from the
Optuna distributions (inkflow.optuna.space_yaml). The closing line is the
best value found. Needs Debian's python3-optuna, python3-sklearn,
python3-zmq, python3-msgpack.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402

import inkflow  # noqa: E402
import inkflow.optuna  # noqa: E402

DISTRIBUTIONS = {
    "C": FloatDistribution(1e-2, 1e3, log=True),
    "gamma": FloatDistribution(1e-5, 1e-1, log=True),
    "class_weight": CategoricalDistribution(["none", "balanced"]),
}

_data = None


def data():
    global _data
    if _data is None:
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        _data = X[:900], y[:900]  # a subset keeps one evaluation near 0.1 s
    return _data


def objective(trial):
    """3-fold cross-validated accuracy of SVC(C, gamma, class_weight) on digits."""
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC
    C = trial.suggest_float("C", 1e-2, 1e3, log=True)
    gamma = trial.suggest_float("gamma", 1e-5, 1e-1, log=True)
    cw = trial.suggest_categorical("class_weight", ["none", "balanced"])
    X, y = data()
    model = SVC(C=C, gamma=gamma, class_weight=None if cw == "none" else "balanced")
    return float(cross_val_score(model, X, y, cv=3).mean())


def service_config(endpoint, n=20, seed=-1, key_by=False):
    """A bkb service config whose named space matches DISTRIBUTIONS."""
    return """sources:
  api: {type: zmq, socket: router, bind: "%s", reply_from: tuner}
operators:
  tuner:
    type: bkb
    inputs: [api]
%s    arms: {space: %s}
    kernel: {type: gaussian, sigma: 0.3}
    lambda: 0.001       # accuracies: differences of ~0.01 matter
    noise_var: 0.0001
    init: 4
    seed: %d
    pending_timeout: 10m
sinks:
  log: {type: file, path: /dev/null, format: jsonl, inputs: [tuner]}
""" % (endpoint, "    key_by: key\n    max_keys: 8\n" if key_by else "",
       inkflow.optuna.space_yaml(DISTRIBUTIONS, n), seed)


def start_service(inkflow_bin, n=20, seed=-1, key_by=False):
    """Start `inkflow run` on a free port; returns (process, endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ep = "tcp://127.0.0.1:%d" % port
    d = tempfile.mkdtemp(prefix="inkflow-optuna-")
    cfg = os.path.join(d, "tuner.yaml")
    with open(cfg, "w") as f:
        f.write(service_config(ep, n, seed, key_by))
    p = subprocess.Popen([inkflow_bin, "run", cfg], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            inkflow.request(ep, {"op": "pending", "limit": 0, **({"key": "up"} if key_by else {})},
                            timeout=0.5)
            return p, ep
        except inkflow.Timeout:
            if p.poll() is not None:
                raise RuntimeError("inkflow exited: %s" % p.stderr.read().decode())
        except inkflow.ServiceError:
            return p, ep
    p.kill()
    raise RuntimeError("inkflow service did not answer within 30 s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", help="a running service (default: start one)")
    ap.add_argument("--inkflow", default=os.path.join(ROOT, "build", "inkflow"))
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data()
    proc = None
    ep = args.endpoint
    if not ep:
        proc, ep = start_service(args.inkflow)
    t0 = time.time()
    try:
        sampler = inkflow.optuna.InkflowSampler(ep)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=args.trials, n_jobs=args.workers)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        print("%d trials by %d workers in %.1f s; the service's own best: %.4f"
              % (len(done), args.workers, time.time() - t0, sampler._svc.best().value))
        print("best value %.4f at %s" % (study.best_value, study.best_params))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

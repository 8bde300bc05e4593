#!/usr/bin/python3
"""Best value after 50, 100, 200 trials: Optuna with inkflow's bkb service
(inkflow.optuna.InkflowSampler) against Optuna's own TPE and random samplers,
on the objective of examples/optuna_sklearn.py (3-fold accuracy of an SVC on
digits), several seeds, one worker (so the samplers see the same sequence of
information). Writes the best-so-far curves as JSON for
examples/plot_best_so_far.py.

    /usr/bin/python3 bench/optuna_compare.py --trials 200 --seeds 3 --out bench-optuna.json

Every sampler runs the real path: the inkflow runs ask and tell through a
running `inkflow` service (one study per seed: key_by, a key per seed).
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import optuna  # noqa: E402

import inkflow.optuna  # noqa: E402
import optuna_sklearn as ex  # noqa: E402


def run(sampler, trials):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    t0 = time.time()
    study.optimize(ex.objective, n_trials=trials, n_jobs=1)
    curve, best = [], float("-inf")
    for t in study.trials:
        if t.value is not None:
            best = max(best, t.value)
        curve.append(best)
    return curve, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--inkflow", default=os.path.join(ROOT, "build", "inkflow"))
    ap.add_argument("--out", default="bench-optuna.json")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ex.data()
    proc, ep = ex.start_service(args.inkflow, key_by=True)
    res = {"inkflow": [], "tpe": [], "random": []}
    secs = {k: 0.0 for k in res}
    try:
        for seed in range(args.seeds):
            for name in res:
                if name == "inkflow":
                    s = inkflow.optuna.InkflowSampler(ep, key="seed-%d" % seed)
                elif name == "tpe":
                    s = optuna.samplers.TPESampler(seed=seed)
                else:
                    s = optuna.samplers.RandomSampler(seed=seed)
                curve, dt = run(s, args.trials)
                res[name].append(curve)
                secs[name] += dt
                print("seed %d %-7s best %.4f  (%.1f s)" % (seed, name, curve[-1], dt), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    marks = [m for m in (50, 100, 200) if m <= args.trials]
    print("\nbest 3-fold accuracy after N trials, median [min, max] over %d seeds:" % args.seeds)
    print("| sampler | " + " | ".join("%d" % m for m in marks) + " | wall s per trial |")
    print("| --- | " + " | ".join("---" for _ in marks) + " | --- |")
    for name, curves in res.items():
        cells = []
        for m in marks:
            v = [c[m - 1] for c in curves]
            cells.append("%.4f [%.4f, %.4f]" % (statistics.median(v), min(v), max(v)))
        print("| %s | %s | %.2f |" % (name, " | ".join(cells),
                                       secs[name] / (args.trials * args.seeds)))
    with open(args.out, "w") as f:
        json.dump({"trials": args.trials, "seeds": args.seeds, "curves": res}, f)
    print("\ncurves written to %s (examples/plot_best_so_far.py %s out.png)" % (args.out, args.out))


if __name__ == "__main__":
    main()

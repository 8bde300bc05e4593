#!/usr/bin/python3
"""PNG of best-so-far against evaluations, inkflow vs TPE vs random, from the
curves bench/optuna_compare.py writes (median over seeds, band min..max).

    /usr/bin/python3 bench/optuna_compare.py --trials 200 --seeds 3 --out bench-optuna.json
    /usr/bin/python3 examples/plot_best_so_far.py bench-optuna.json best_so_far.png

Needs Debian's python3-matplotlib.
"""
import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    with open(sys.argv[1]) as f:
        data = json.load(f)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    floor = []
    for name, color in (("inkflow", "C0"), ("tpe", "C1"), ("random", "C2")):
        curves = data["curves"].get(name)
        if not curves:
            continue
        n = min(len(c) for c in curves)
        xs = list(range(1, n + 1))
        med = [statistics.median(c[i] for c in curves) for i in range(n)]
        lo = [min(c[i] for c in curves) for i in range(n)]
        hi = [max(c[i] for c in curves) for i in range(n)]
        label = {"inkflow": "inkflow bkb (InkflowSampler)", "tpe": "Optuna TPE",
                 "random": "Optuna random"}[name]
        ax.plot(xs, med, color=color, label=label)
        floor.append(med[min(9, n - 1)])
        ax.fill_between(xs, lo, hi, color=color, alpha=0.15)
    if floor:  # the first few evaluations would squash the part that differs
        top = max(max(c) for cs in data["curves"].values() for c in cs)
        ax.set_ylim(min(floor) - 0.1 * (top - min(floor) + 1e-9), top + 0.1 * (top - min(floor) + 1e-9))
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best 3-fold accuracy so far")
    ax.set_title("SVC on digits: median over %d seeds (band: min..max)" % data["seeds"])
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)
    print("wrote %s" % sys.argv[2])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

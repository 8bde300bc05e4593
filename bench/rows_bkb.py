"""bkb rows: budgeted GP-UCB (BKB, batched BBKB) against scikit-learn's
GaussianProcessRegressor loop and against exact incremental GP-UCB in C.

    bench/run bkb_sklearn bkb_exact bkb_fns

Within a row every contender gets the same arms, rewards, noise sequence
(sd 0.1), gaussian kernel, lambda and beta convention (UCB = mu + beta sigma,
sigma the KRR-normalised standard deviation, prior k/lambda; beta from the
reference formula with noise_var 0.01). Branin rows: sigma 0.25, lambda 0.01;
bkb's qbar is left at its default everywhere (2 (1 + lambda): 2.02 for the
Branin rows, 4 for Hartmann-4). Hartmann-4 rows: sigma 0.5, lambda 1 (with lambda 0.01 BBKB's
dictionary had 327 arms at t = 1,000 and its regret was 0.7 per round: still
exploring; with qbar 2, the default before it depended on d, BBKB's cumulative
regret at T = 10,000 was 1.38-1.46x exact's over three operator seeds, with
qbar 3 0.68-0.72x). `bkb_fns` rows: bench/bench_bkb_fns.c, regret against exact
GP-UCB over 20 seeds on standard test functions (docs/bkb.md).
The C side is bench/bench_bkb.c (one algorithm per process, so that its peak
RSS is its own); BLAS runs single-threaded everywhere.
"""
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("INK_BUILD") or os.path.join(ROOT, "build")
PY = "/usr/bin/python3"  # Debian's python3 with python3-sklearn
NVAR = 0.01  # noise variance (noise_var in beta)


def bench_bkb(A, T, D, algo, sigma, lam, qbar=0, dump=None, seed=1):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if dump:
        env["BENCH_BKB_DUMP"] = dump
    out = subprocess.run([os.path.join(BUILD, "bench_bkb"), str(A), str(T), str(seed), str(D), algo,
                          str(sigma), str(lam), str(qbar)], check=True, capture_output=True, text=True, env=env).stdout
    res, per = {}, {}
    for line in out.splitlines():
        name, val, _ = line.split()
        key = name.split("_T%d_" % T, 1)[1]
        if "_ms_per_round_at_" in key:
            per[int(key.rsplit("_", 1)[1])] = float(val)
        else:
            res[key] = float(val)
    res["per"] = per
    return res


def sklearn_loop(prefix, T, sigma, lam):
    """GP-UCB with GaussianProcessRegressor refitted every round (fixed kernel,
    no hyperparameter search: the cheapest honest use). Runs in a child with
    single-threaded BLAS; returns the same keys as bench_bkb."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([PY, os.path.abspath(__file__), "--sklearn", prefix, str(T), str(sigma), str(lam)], check=True,
                         capture_output=True, text=True, env=env).stdout
    res, per = {}, {}
    for line in out.splitlines():
        k, v = line.split()
        if k.startswith("at_"):
            per[int(k[3:])] = float(v)
        else:
            res[k] = float(v)
    res["per"] = per
    return res


def _sklearn_child(prefix, T, SIGMA, LAMBDA):
    import math
    import random

    import numpy as np
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF

    arms = np.loadtxt(prefix + ".arms", delimiter=",")
    X, f = arms[:, :-1], arms[:, -1]
    noise = np.loadtxt(prefix + ".noise")
    A = len(f)
    rng = random.Random(77)
    cnt = np.zeros(A)
    px, py = [], []
    var = np.full(A, 1 / LAMBDA)
    mu = np.zeros(A)
    dt, regret = [], 0.0
    t0 = time.perf_counter()
    tl = t0
    for t in range(T):
        if t < 2:
            j = int(rng.random() * A)
        else:
            sumcv = float(np.dot(cnt, var))
            beta = math.sqrt(LAMBDA) + math.sqrt(NVAR * (sumcv * math.log(max(t, 2)) + math.log(2.0)))
            j = int(np.argmax(mu + beta * np.sqrt(np.maximum(var, 0))))
        regret += 1 - f[j]
        cnt[j] += 1
        px.append(X[j])
        py.append(f[j] + noise[t])
        gp = GaussianProcessRegressor(kernel=RBF(length_scale=SIGMA, length_scale_bounds="fixed"),
                                      alpha=LAMBDA, optimizer=None, normalize_y=False)
        gp.fit(np.array(px), np.array(py))
        mu, sd = gp.predict(X, return_std=True)
        var = sd * sd / LAMBDA  # GP variance -> KRR-normalised variance (prior k/lambda)
        tn = time.perf_counter()
        dt.append(tn - tl)
        tl = tn
    total = time.perf_counter() - t0
    print("total_s %.4f" % total)
    print("ms_per_round %.4f" % (1e3 * total / T))
    print("regret %.4f" % regret)
    w = max(T // 20, 1)
    for k in range(1, 11):
        t1 = T * k // 10
        t0_ = max(t1 - w, 0)
        print("at_%d %.4f" % (t1, 1e3 * sum(dt[t0_:t1]) / (t1 - t0_)))
    print("peak_rss %d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def mib(kib):
    return "%.0f MiB" % (kib / 1024)


def row_sklearn(A=2000, T=1000, D=2, sigma=0.25, lam=0.01):
    tmp = tempfile.mkdtemp(prefix="inkbench-bkb-")
    prefix = os.path.join(tmp, "arms")
    bb = bench_bkb(A, T, D, "bbkb", sigma, lam, dump=prefix)
    b = bench_bkb(A, T, D, "bkb", sigma, lam)
    sk = sklearn_loop(prefix, T, sigma, lam)
    w = max(T // 20, 1)
    name = "bkb vs scikit-learn, %d arms, d = %d (Branin), T = %d, sigma %g, lambda %g" % (A, D, T, sigma, lam)
    marks = [T // 10, T // 2, T]
    rows = [
        (name + ": time per round at the end (mean of rounds %d-%d)" % (T - w + 1, T),
         "BBKB %.2f ms, BKB %.2f ms" % (bb["per"][T], b["per"][T]),
         "GaussianProcessRegressor fit + predict: %.1f ms" % sk["per"][T],
         "%.0fx (BKB %.0fx)" % (sk["per"][T] / bb["per"][T], sk["per"][T] / b["per"][T])),
        (name + ": time per round at t = " + ", ".join(str(t) for t in marks),
         "BBKB " + " / ".join("%.2f" % bb["per"][t] for t in marks) + " ms; BKB "
         + " / ".join("%.2f" % b["per"][t] for t in marks) + " ms",
         "scikit-learn " + " / ".join("%.1f" % sk["per"][t] for t in marks) + " ms", "-"),
        (name + ": total time, peak RSS",
         "BBKB %.2f s, %s; BKB %.2f s, %s" % (bb["bbkb_total_s"], mib(bb["bbkb_peak_rss"]),
                                              b["bkb_total_s"], mib(b["bkb_peak_rss"])),
         "scikit-learn %.1f s, %s" % (sk["total_s"], mib(sk["peak_rss"])),
         "%.0fx less time" % (sk["total_s"] / bb["bbkb_total_s"])),
        (name + ": cumulative regret (BKB / BBKB dictionary %d / %d arms)" % (b["bkb_dict"], bb["bbkb_dict"]),
         "BBKB %.1f, BKB %.1f" % (bb["bbkb_regret"], b["bkb_regret"]),
         "scikit-learn (exact GP-UCB) %.1f" % sk["regret"],
         "%.2fx (BKB %.2fx)" % (bb["bbkb_regret"] / sk["regret"], b["bkb_regret"] / sk["regret"])),
    ]
    for fn in os.listdir(tmp):
        os.remove(os.path.join(tmp, fn))
    os.rmdir(tmp)
    return rows


def row_exact(A=10000, T=10000, D=4, sigma=0.5, lam=1.0, qbar=0, T_bkb=None):
    T_bkb = T_bkb or int(os.environ.get("INK_BENCH_BKB_PREFIX", "2000"))
    ex = bench_bkb(A, T, D, "exact", sigma, lam)
    bb = bench_bkb(A, T, D, "bbkb", sigma, lam, qbar)
    b = bench_bkb(A, T_bkb, D, "bkb", sigma, lam, qbar)
    name = "bkb vs exact incremental GP-UCB in C, %d arms, d = %d (Hartmann-4), T = %d, sigma %g, lambda %g, qbar %s" % (
        A, D, T, sigma, lam, qbar or "default")
    ts = sorted(ex["per"])
    # exact's per-round cost is linear in t: least-squares slope through the origin
    slope = sum(t * ex["per"][t] for t in ts) / sum(t * t for t in ts)
    bkb_end = b["per"][T_bkb]
    cross = bkb_end / slope
    marks = [T // 10, T // 2, T]
    rows = [
        (name + ": total time",
         "BBKB %.1f s" % bb["bbkb_total_s"],
         "exact GP-UCB (incremental Cholesky, one column per round) %.1f s" % ex["exact_total_s"],
         "%.1fx" % (ex["exact_total_s"] / bb["bbkb_total_s"])),
        (name + ": time per round at t = " + ", ".join(str(t) for t in marks),
         "BBKB " + " / ".join("%.2f" % bb["per"][t] for t in marks) + " ms",
         "exact " + " / ".join("%.2f" % ex["per"][t] for t in marks) + " ms",
         "%.1fx at t = %d" % (ex["per"][T] / bb["per"][T], T)),
        (name + ": BBKB time per round, t = %d..%d by %d" % (T // 10, T, T // 10),
         " / ".join("%.2f" % bb["per"][t] for t in sorted(bb["per"])) + " ms",
         "exact " + " / ".join("%.1f" % ex["per"][t] for t in ts) + " ms",
         "BBKB at most %.2f ms for t >= %d; exact x%.1f from t = %d to %d" % (
             max(bb["per"][t] for t in ts if t >= T // 5), T // 5,
             ex["per"][T] / ex["per"][T // 5], T // 5, T)),
        (name + ": peak RSS (process)",
         "BBKB %s (dictionary %d arms)" % (mib(bb["bbkb_peak_rss"]), bb["bbkb_dict"]),
         "exact %s" % mib(ex["exact_peak_rss"]),
         "%.1fx less" % (ex["exact_peak_rss"] / bb["bbkb_peak_rss"])),
        (name + ": cumulative regret",
         "BBKB %.1f" % bb["bbkb_regret"], "exact %.1f" % ex["exact_regret"],
         "%.2fx" % (bb["bbkb_regret"] / ex["exact_regret"])),
        (name + ": plain BKB (first %d rounds), crossover" % T_bkb,
         "BKB %.1f ms per round at t = %d (dictionary %d arms, regret %.1f)" % (
             bkb_end, T_bkb, b["bkb_dict"], b["bkb_regret"]),
         "exact %.3f ms per round per 1,000 rounds of t" % (1e3 * slope),
         "BKB per round beats exact from t ~ %.0f (BKB at t = %d vs exact's linear fit)" % (
             cross, T_bkb)),
    ]
    return rows


def fns_run(func, A, T, seeds, sigma, lam, offset=0.0):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", BKB_LAMBDA=str(lam), BKB_OFFSET=str(offset))
    out = subprocess.run([os.path.join(BUILD, "bench_bkb_fns"), func, str(A), str(T), str(seeds), str(sigma),
                          "default"], check=True, capture_output=True, text=True, env=env).stdout
    res = {}
    for line in out.splitlines():
        name, val = line.split()[:2]
        res[name.rsplit("_T%d_" % T, 1)[1]] = float(val)
    return res


def row_fns(seeds=None):
    """bkb (defaults) against exact GP-UCB started from the same random arms,
    20 seeds per function (INK_BENCH_BKB_SEEDS to change)."""
    seeds = seeds or int(os.environ.get("INK_BENCH_BKB_SEEDS", "20"))
    cases = [("hartmann6", 2000, 300, 0.3, 1.0, -5.0), ("levy6", 2000, 300, 0.3, 1.0, -5.0),
             ("ackley5", 2000, 300, 0.3, 1.0, -5.0), ("rosenbrock4", 2000, 300, 0.3, 1.0, -5.0),
             ("branin", 2000, 300, 0.15, 1.0, -5.0),
             ("hartmann6", 1000, 200, 0.3, 0.01, 0.0), ("levy6", 1000, 200, 0.3, 0.01, 0.0),
             ("ackley5", 1000, 200, 0.3, 0.01, 0.0), ("rosenbrock4", 1000, 200, 0.3, 0.01, 0.0),
             ("branin", 2000, 300, 0.15, 0.01, 0.0)]
    rows = []
    for func, A, T, sigma, lam, off in cases:
        r = fns_run(func, A, T, seeds, sigma, lam, off)
        rows.append(("bkb (default qbar) vs exact GP-UCB, same start arms: %s, %d random arms, T = %d, sigma %g, "
                     "lambda %g, rewards standardised%s, %d seeds" % (
                         func, A, T, sigma, lam, " minus %g" % -off if off < 0 else "", seeds),
                     "total regret ratio %.3f" % r["total_ratio"], "exact GP-UCB in C",
                     "worst seed %.3f" % r["worst_seed_ratio"]))
    return rows


ROWS = {"bkb_sklearn": row_sklearn, "bkb_exact": row_exact, "bkb_fns": row_fns}

if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--sklearn":
        _sklearn_child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        for name in sys.argv[1:] or list(ROWS):
            for r in ROWS[name]():
                print("| %s | %s | %s | %s |" % r)
                sys.stdout.flush()

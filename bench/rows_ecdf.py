"""ecdf rows: the exact ECDF at every point by divide and conquer against the
naive O(N^2) count (C) and numpy's brute force; KLL and Fenwick throughput
inside the operator; the end-to-end kll graph against the passthrough graph.

    bench/run ecdf_dc ecdf_kll ecdf_fenwick ecdf_e2e

The operator-level figures come from bench/bench_ecdf.c (CPU time of one
process). numpy runs in Debian's python3 (python3-numpy) on the very points the
C side used (dumped by bench_ecdf), and its counts are checked against the D&C.
Quadratic methods are timed at a size they can do and extrapolated as N^2.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (three_process, free_ep, BUILD, INKFLOW)

ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("INK_BUILD") or os.path.join(ROOT, "build")
PY = "/usr/bin/python3"  # Debian's python3 with python3-numpy
TARGET_KLL = 10e6  # issue 5: KLL updates/s inside the operator
_cache = {}


def bench_ecdf(scale=1.0):
    """Runs bench_ecdf once (cached): {name: value} and the dump prefix."""
    if scale in _cache:
        return _cache[scale]
    tmp = tempfile.mkdtemp(prefix="inkbench-ecdf-")
    prefix = os.path.join(tmp, "pts")
    env = dict(os.environ, BENCH_ECDF_DUMP=prefix)
    out = subprocess.run([os.path.join(BUILD, "bench_ecdf"), str(scale)], check=True,
                         capture_output=True, text=True, env=env).stdout
    res = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            res[parts[0]] = float(parts[1])
    _cache[scale] = (res, prefix)
    return res, prefix


def numpy_brute(prefix, d):
    """numpy's brute force on the dumped points, in a child process: returns
    (n, seconds, mismatches against the D&C counts)."""
    out = subprocess.run([PY, os.path.abspath(__file__), "--numpy", prefix, str(d)], check=True,
                         capture_output=True, text=True,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")).stdout
    n, secs, bad = out.split()
    return int(n), float(secs), int(bad)


def _numpy_child(prefix, d):
    import numpy as np
    P = np.fromfile(prefix + "_d%d.points" % d, dtype=np.float64).reshape(-1, d)
    Fdc = np.fromfile(prefix + "_d%d.F" % d, dtype=np.float64)
    n = len(P)
    F = np.empty(n)
    t0 = time.process_time()
    B = 256  # rows per block: B x n x d booleans at a time
    for i in range(0, n, B):
        blk = P[i:i + B]
        F[i:i + B] = (P[None, :, :] <= blk[:, None, :]).all(axis=2).sum(axis=1)
    t = time.process_time() - t0
    print(n, "%.4f" % t, int((F != Fdc).sum()))


def row_dc():
    res, prefix = bench_ecdf()
    rows = []
    for d in (2, 3):
        key = [k for k in res if k.startswith("ecdf_dc_d%d_n" % d) and k.endswith("_seconds")]
        sizes = sorted(int(k.split("_n")[1].split("_")[0]) for k in key)
        nn, N = sizes[0], sizes[-1]
        tdc = res["ecdf_dc_d%d_n%d_seconds" % (d, N)]
        tnaive = res["ecdf_naive_d%d_n%d_seconds" % (d, nn)]
        est = res["ecdf_naive_d%d_n%d_extrapolated_seconds" % (d, N)]
        bad = int(res["ecdf_dc_d%d_mismatches_vs_naive" % d])
        npn, npt, npbad = numpy_brute(prefix, d)
        npest = npt * (N / npn) ** 2
        name = "ecdf exact ECDF at every point, D&C, N = %d, d = %d (gaussian)" % (N, d)
        rows.append((name + ": vs naive O(N^2) count in C",
                     "%.2f s" % tdc,
                     "naive %.2f s at N = %d (%d mismatches with D&C) -> %.0f s at N = %d"
                     % (tnaive, nn, bad, est, N),
                     "%.0fx" % (est / tdc)))
        rows.append((name + ": vs numpy brute force",
                     "%.2f s" % tdc,
                     "numpy %s %.2f s at N = %d (%d mismatches with D&C) -> %.0f s at N = %d"
                     % (_numpy_version(), npt, npn, npbad, npest, N),
                     "%.0fx" % (npest / tdc)))
        rows.append((name + ": time ratio N/2 -> N",
                     "%.2f" % res["ecdf_dc_d%d_time_ratio_n_over_half" % d],
                     "2 (1 + 1/log2(N/2))^(d-1) = %.2f" % res["ecdf_dc_d%d_time_ratio_expected" % d],
                     "%.2f" % (res["ecdf_dc_d%d_time_ratio_n_over_half" % d]
                               / res["ecdf_dc_d%d_time_ratio_expected" % d])))
    return rows


def _numpy_version():
    v = subprocess.run([PY, "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                       text=True).stdout.strip()
    return v or "?"


def row_kll():
    res, _ = bench_ecdf()
    p = res["ecdf_kll_k200_process_per_second"]
    return [("ecdf kll k = 200, 1e7 gaussian records: operator process (F by rank query, then "
             "update), median of 5 runs with the node's query view",
             "%.2fM rec/s (best %.2fM; without the view %.2fM; 3 keys round-robin %.2fM, "
             "without views %.2fM; bare sketch: update %.1fM/s, rank query %.1fM/s)"
             % (p / 1e6, res["ecdf_kll_k200_process_best_per_second"] / 1e6,
                res["ecdf_kll_k200_process_noview_per_second"] / 1e6,
                res["ecdf_kll_k200_3keys_process_per_second"] / 1e6,
                res["ecdf_kll_k200_3keys_process_noview_per_second"] / 1e6,
                res["ecdf_kll_k200_update_per_second"] / 1e6,
                res["ecdf_kll_k200_rank_query_per_second"] / 1e6),
             "issue 5 target %.0fM rec/s" % (TARGET_KLL / 1e6),
             "%.2f" % (p / TARGET_KLL))]


def row_fenwick():
    res, _ = bench_ecdf()
    return [("ecdf grid d = 3, 64 nodes per axis (262,144 cells): Fenwick updates / queries",
             "%.2fM updates/s, %.2fM queries/s" % (res["ecdf_fenwick_d3_m64_updates_per_second"] / 1e6,
                                                  res["ecdf_fenwick_d3_m64_queries_per_second"] / 1e6),
             "count array (O(1) update, query sums the box): %.1fM updates/s, %.0f queries/s"
             % (res["ecdf_countarray_d3_m64_updates_per_second"] / 1e6,
                res["ecdf_countarray_d3_m64_queries_per_second"]),
             "updates %.2fx, queries %.0fx" % (
                 res["ecdf_fenwick_d3_m64_updates_per_second"]
                 / res["ecdf_countarray_d3_m64_updates_per_second"],
                 res["ecdf_fenwick_d3_m64_queries_per_second"]
                 / res["ecdf_countarray_d3_m64_queries_per_second"]))]


def row_e2e(n=2000000, reps=3):
    """zmq pull -> ecdf (kll) -> zmq push against zmq pull -> passthrough -> zmq
    push, both with 1-D records, alternating, median of `reps`."""
    if os.environ.get("INK_BUILD"):  # the same build as the other rows
        run.BUILD, run.INKFLOW = BUILD, os.path.join(BUILD, "inkflow")
    tmp = tempfile.mkdtemp(prefix="inkbench-ecdf-")
    graphs = {
        "pass": "  op: {type: passthrough, inputs: [feed]}\n",
        "ecdf": "  op: {type: ecdf, inputs: [feed], mode: kll, k: 200}\n",
    }
    rates = {k: [] for k in graphs}
    for _ in range(reps):
        for name, op in graphs.items():
            ein, eout = run.free_ep(), run.free_ep()
            cfg = os.path.join(tmp, name + ".yaml")
            with open(cfg, "w") as f:
                f.write('sources:\n  feed: {type: zmq, socket: pull, bind: "%s"}\noperators:\n%s'
                        'sinks:\n  out: {type: zmq, socket: push, bind: "%s", inputs: [op]}\n'
                        % (ein, op, eout))
            rates[name].append(run.three_process([run.INKFLOW, "run", cfg], ein, eout, n, 1))
    e, b = statistics.median(rates["ecdf"]), statistics.median(rates["pass"])
    return [("ecdf kll k = 200 end to end, zmq pull -> ecdf -> zmq push, 1-D, %d records" % n,
             "%.0f rec/s" % e, "zmq pull -> passthrough -> zmq push, 1-D: %.0f rec/s" % b,
             "%.2f" % (e / b))]


ROWS = {"ecdf_dc": row_dc, "ecdf_kll": row_kll, "ecdf_fenwick": row_fenwick, "ecdf_e2e": row_e2e}

if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--numpy":
        _numpy_child(sys.argv[2], int(sys.argv[3]))
    else:
        for name in sys.argv[1:] or list(ROWS):
            for r in ROWS[name]():
                print("| %s | %s | %s | %s |" % r)
                sys.stdout.flush()

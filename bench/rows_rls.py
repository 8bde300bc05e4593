"""rls_sketch rows (issue 3): throughput against dictionary size, the speed-up
over exact incremental leverage scores at n = 20,000, the peak RSS from 10^5 to
10^6 arrivals, and the accuracy (band share, KRR error ratio) from the same run.

    bench/run rls

All figures come from bench_rls (operator level, CPU time of the process, BLAS
on one thread); d = 8, N(0, I) inputs, gaussian kernel with sigma = 2, qbar 8,
eps 0.5. The dictionary size is set by gamma (250 / 30 / 4 for ~64 / 256 /
1024 members) with max_dict 1.5x the target so the cap does not bind. Each
size is run with `batch: 1` (where it takes seconds), `batch: 1024`, and
`batch: 1024, rescore: cholesky` (docs/algorithms.md 1.7's faster re-estimation).
"""
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "bench_rls")


def parse(text):
    vals = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            try:
                vals[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return vals


def row_rls():
    v = parse(subprocess.run([BENCH], check=True, capture_output=True, text=True).stdout)
    rows = []
    for target in (64, 256, 1024):
        for pr, what in (("", ""), ("_predict", ", predict (Nystrom KRR)")):
            rate = v["rls_d8_near%d_default%s_arrivals" % (target, pr)]
            md = v["rls_d8_near%d_default%s_mean_dict" % (target, pr)]
            goal = ""
            if target == 256:
                goal = " (target >= %s)" % ("10,000" if pr else "20,000")
            key = "rls_d8_near%d_batch1_arrivals" % target
            base = ("batch 1 (the old default; mean dict %.0f): %.0f /s"
                    % (v["rls_d8_near%d_batch1_mean_dict" % target], v[key])
                    if key in v and not pr else "-")
            rows.append(("rls_sketch arrivals/s, d=8 gaussian, DEFAULT settings (batch 0, slack "
                         "0.1)%s, dictionary near %d (mean %.0f)" % (what, target, md),
                         "%.0f /s%s" % (rate, goal), base,
                         "%.1f" % (rate / v[key]) if key in v and not pr else "-"))
    for target in (64, 256, 1024):
        rate = v["rls_d8_near%d_batch1024_arrivals" % target]
        md = v["rls_d8_near%d_batch1024_mean_dict" % target]
        name = ("rls_sketch arrivals/s, d=8 gaussian, dictionary near %d (mean %.0f), batch 1024"
                % (target, md))
        cell = "%.0f /s" % rate + (" (target >= 20,000)" if target == 256 else "")
        chol = v["rls_d8_near%d_batch1024chol_arrivals" % target]
        rows.append((name.replace("batch 1024", "batch 1024, rescore: cholesky"),
                     "%.0f /s" % chol + (" (target >= 20,000)" if target == 256 else ""),
                     "rescore: eigen (the default, row above): %.0f /s" % rate,
                     "%.2f" % (chol / rate)))
        key = "rls_d8_near%d_batch1_arrivals" % target
        if key in v:
            b1 = v[key]
            base = ("batch 1 (all members re-estimated at every arrival; mean dict %.0f): %.0f /s"
                    % (v["rls_d8_near%d_batch1_mean_dict" % target], b1))
            rows.insert(len(rows) - 1, (name, cell, base, "%.1f" % (rate / b1)))
        else:
            rows.insert(len(rows) - 1,
                        (name, cell, "batch 1 not run (an O(m^3) eigensolve per arrival)", "-"))
    ex, sk = v["exact_incremental_rls_n20000_extrapolated"], v["rls_sketch_n20000_near256_batch1024"]
    rows.append((
        "rls_sketch vs exact incremental leverage scores, n = 20,000 arrivals (gamma 30)",
        "%.2f s (mean dict %.0f)" % (sk, v["rls_sketch_n20000_mean_dict"]),
        "exact O(t^2)-per-step Cholesky growth: %.0f s, extrapolated from steps [3000, 3200) "
        "(%.2f s) by sum t^2 (the full run needs a 3.2 GB factor)"
        % (ex, v["exact_window_steps_3000_3200"]),
        "%.0fx faster (target >= 100x)" % (ex / sk)))
    sk0 = v["rls_sketch_n20000_default"]
    rows.append((
        "rls_sketch DEFAULT settings vs exact incremental leverage scores, n = 20,000 (gamma 30)",
        "%.2f s (mean dict %.0f)" % (sk0, v["rls_sketch_n20000_default_mean_dict"]),
        "the same extrapolated exact run: %.0f s" % ex, "%.0fx faster" % (ex / sk0)))
    for tag, name in (("", "batch 1024, max_dict 384"), ("_default", "DEFAULT settings")):
        rows.append((
            "rls_sketch accuracy (%s): arrival scores in the band [tau/3, tau], n = 3,200, and "
            "prequential KRR MSE (mu = gamma = 30), t in [200, 3200)" % name,
            "%.1f%% in band (tau~/tau from %.2f to %.2f); MSE %.4f"
            % (100 * v["rls%s_band_share_n3200" % tag], v["rls%s_band_ratio_min" % tag],
               v["rls%s_band_ratio_max" % tag], v["rls%s_krr_mse_sketch_n3200" % tag]),
            "exact incremental RLS; exact prequential KRR MSE %.4f"
            % v["rls%s_krr_mse_exact_n3200" % tag],
            "%.3f" % v["rls%s_krr_mse_ratio" % tag]))
    rows.append((
        "rls_sketch accuracy: arrival scores in the band [tau/3, tau], n = 3,200 (same stream)",
        "%.1f%% (tau~/tau from %.2f to %.2f; gamma_eff %g)"
        % (100 * v["rls_band_share_n3200"], v["rls_band_ratio_min"], v["rls_band_ratio_max"],
           v["rls_accuracy_gamma_eff"]),
        "exact incremental RLS of the row above", "-"))
    rows.append((
        "rls_sketch accuracy: prequential KRR MSE (mu = gamma = 30), t in [200, 3200)",
        "%.4f" % v["rls_krr_mse_sketch_n3200"],
        "exact prequential KRR (same factor): %.4f" % v["rls_krr_mse_exact_n3200"],
        "%.3f" % v["rls_krr_mse_ratio"]))
    r = parse(subprocess.run([BENCH, "rss", "100000", "1000000"], check=True, capture_output=True,
                             text=True).stdout)
    a, b = r["rls_peak_rss_after_100000"], r["rls_peak_rss_after_1000000"]
    rows.append((
        "rls_sketch peak RSS (ru_maxrss) after 10^6 arrivals, dictionary near 256 (mean %.0f), "
        "gamma_eff %g at the end" % (r["rls_mean_dict_to_1000000"], r["rls_gamma_eff_at_end"]),
        "%.0f KiB (%.0f KiB after init)" % (b, r["rls_peak_rss_after_init"]),
        "same process after 10^5 arrivals: %.0f KiB (exact RLS would hold an 80 GB factor)" % a,
        "%.3f" % (b / a)))
    return rows


BENCH0 = os.path.join(ROOT, "build", "bench_rls_defaults")


def digits_file():
    """The 8x8 digit images (python3-sklearn ships them: load_digits), pixels
    scaled to [0, 1], as native doubles; returns (path, n, d, median distance)."""
    code = ("import sys, numpy as np\n"
            "from scipy.spatial.distance import pdist\n"
            "from sklearn.datasets import load_digits\n"
            "X = load_digits().data / 16.0\n"
            "X.astype('=f8').tofile(sys.argv[1])\n"
            "print(len(X), X.shape[1], np.median(pdist(X)))\n")
    path = os.path.join(tempfile.mkdtemp(prefix="inkbench-"), "digits.f64")
    out = subprocess.run(["/usr/bin/python3", "-c", code, path], check=True, capture_output=True,
                         text=True).stdout.split()
    return path, int(out[0]), int(out[1]), float(out[2])


def row_rls_defaults():
    """rls_sketch with its DEFAULT settings (batch 0, slack 0.1) against an exact
    baseline in C with LAPACK in the same process: a Cholesky factor of
    K_t + gamma I grown by one row per arrival (exact RLS of each arrival and
    exact prequential KRR with mu = gamma)."""
    rows = []
    v = parse(subprocess.run([BENCH0, "friedman", "3000"], check=True, capture_output=True,
                             text=True).stdout)
    p = "friedman_n3000_"
    rows.append((
        "rls_sketch DEFAULTS, Friedman #1 n = 3,000, d = 10, gaussian sigma 1, gamma = mu = 0.5, "
        "qbar 16, max_dict 2048, predict",
        "%.0f rec/s (%.2f s; dict %.0f at the end), MSE %.3f, %.1f%% of scores in the band"
        % (v[p + "sketch_rate"], v[p + "sketch_s"], v[p + "dict_final"], v[p + "mse_sketch"],
           100 * v[p + "band_share"]),
        "exact incremental RLS + prequential KRR: %.0f rec/s (%.2f s), MSE %.3f"
        % (v[p + "exact_rate"], v[p + "exact_s"], v[p + "mse_exact"]),
        "speed %.2fx; MSE ratio %.4f (target >= 1,000 rec/s, MSE within 1.05)"
        % (v[p + "speedup"], v[p + "mse_ratio"])))
    v = parse(subprocess.run([BENCH0, "friedman", "100000", "4000", "4200"], check=True,
                             capture_output=True, text=True).stdout)
    p = "friedman_n100000_"
    rows.append((
        "rls_sketch DEFAULTS, Friedman #1 n = 100,000 (same settings)",
        "%.1f s (%.0f rec/s; dict %.0f at the end, gamma_eff %g); MSE over the first %d: %.3f"
        % (v[p + "sketch_s"], v[p + "sketch_rate"], v[p + "dict_final"], v[p + "gamma_eff"],
           v[p + "mse_over"], v[p + "mse_sketch"]),
        "exact incremental: %.0f s, extrapolated by sum t^2 from steps [4000, 4200) (%.2f s); "
        "MSE %.3f" % (v[p + "exact_s"], v[p + "exact_window_s"], v[p + "mse_exact"]),
        "%.0fx faster (target >= 20x); MSE ratio %.4f" % (v[p + "speedup"], v[p + "mse_ratio"])))
    path, n, d, med = digits_file()
    v = parse(subprocess.run([BENCH0, "file", path, str(n), str(d), "%.4f" % med, "1", "16"],
                             check=True, capture_output=True, text=True).stdout)
    p = "file_"
    rows.append((
        "rls_sketch DEFAULTS, 8x8 digits (sklearn load_digits, n = %d, d = %d, pixels / 16), "
        "gaussian sigma = median distance %.2f, gamma 1, qbar 16" % (n, d, med),
        "%.0f rec/s (median of 5; dict %.0f at the end), %.2f%% of arrival scores in the band "
        "(tau~/tau %.2f..%.2f)" % (v[p + "sketch_rate"], v[p + "dict_final"],
                                  100 * v[p + "band_share"], v[p + "band_ratio_min"],
                                  v[p + "band_ratio_max"]),
        "exact incremental RLS: %.0f rec/s" % v[p + "exact_rate"],
        "%.2fx (target >= 5,000 rec/s, 100%% in band)" % v[p + "speedup"]))
    return rows


ROWS = {"rls": row_rls, "rls_defaults": row_rls_defaults}

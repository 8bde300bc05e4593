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


ROWS = {"rls": row_rls}

"""rls_sketch DISQUEAK merge row (issue 14): the merge of two dictionaries of
256 points, d = 8, against rebuilding one sketch (docs/rls_sketch.md#publish-and-merge).

    bench/run rls_merge

From bench_rls_merge (operator level, CPU time of the process, BLAS on one
thread, medians of 9): two sketches with default settings (gamma 50, qbar 8,
gaussian sigma 2) fed disjoint N(0, I) streams until each holds 256 points,
each publishes its partial; the merge (parse + rebuild, what the merge node
runs on the first query after a partial changed) against one fresh sketch fed
the union's 512 points and one fed both original streams.
"""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "bench_rls_merge")


def parse(text):
    vals = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            try:
                vals[parts[0]] = float(parts[1])
            except ValueError:
                vals[parts[0]] = parts[1]
    return vals


def row_rls_merge():
    v = parse(subprocess.run([BENCH, "9"], check=True, capture_output=True, text=True).stdout)
    merge = "%.1f ms (merged dict %d, gamma_eff %g)" % (1e3 * v["rls_merge_time"],
                                                        v["rls_merge_dict"],
                                                        v["rls_merge_gamma_eff"])
    name = ("rls_sketch DISQUEAK merge of two dictionaries of 256 points (d = 8, default "
            "settings, partials of %s bytes, sketches over %s points)"
            % (v["rls_merge_partial_bytes"], v["rls_merge_points_per_sketch"]))
    return [
        (name, merge,
         "one sketch fed both original streams: %.1f ms (dict %d)"
         % (1e3 * v["rls_stream_sketch_time"], v["rls_stream_sketch_dict"]),
         "%.1fx faster" % v["rls_merge_vs_stream_speedup"]),
        (name.replace("DISQUEAK merge", "DISQUEAK merge vs the union's points"), merge,
         "one sketch fed the union's 512 points as plain points: %.2f ms, dict %d (the atoms' "
         "weights are lost: not a sketch of the data)"
         % (1e3 * v["rls_union_sketch_time"], v["rls_union_sketch_dict"]),
         "%.3f" % v["rls_merge_vs_union_speedup"]),
    ]


ROWS = {"rls_merge": row_rls_merge}

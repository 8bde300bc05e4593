"""State rows: snapshot time and size against state size, and the throughput
cost of periodic snapshots (docs/state.md).

    bench/run snapshot_rls snapshot_kll snapshot_cost snapshot_pause fault_loop

- snapshot_rls: rls_sketch with a full dictionary of 1024 points at d = 64;
  the final snapshot's size and time (written to a temporary file, fsync'd,
  renamed, directory fsync'd), against writing + fsyncing the same number of
  bytes from Python in the same directory (the I/O floor).
- snapshot_kll: ecdf mode kll (k = 200), one sketch per key for 10,000 keys.
- snapshot_cost: records/s of the 10,000-key KLL graph with snapshots every
  10 s against the same graph without snapshots, alternated, same input.
  The target in issue 6 is a ratio of at least 0.95; issue 20 raised it to 0.98.
- snapshot_pause: the largest gap between two consecutive records at the
  sink (a zmq push read by ink_count --gaps, which timestamps every record)
  for the 10,000-key KLL graph with a snapshot every second, against the same
  graph without snapshots (the gaps of the pipeline itself). Issue 20's
  target: at most 5 ms with snapshots.
- fault_loop: the kill -9 loop of tests/e2e/faultloop.py with 30 kills
  (ctest runs 8): a keyed graph, a snapshot every 100 ms, SIGKILL at random
  moments (half during a snapshot write), --restore; the final output
  against an uninterrupted run's. Not a speed: a count of what happened.
"""
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("INK_BUILD") or os.path.join(ROOT, "build")
INKFLOW = os.path.join(BUILD, "inkflow")


def run_graph(d, yaml_text):
    cfg = os.path.join(d, "g.yaml")
    with open(cfg, "w") as f:
        f.write(yaml_text)
    os.makedirs(os.path.join(d, "snap"), exist_ok=True)
    t = time.time()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([INKFLOW, "run", cfg], capture_output=True, text=True,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    el = time.time() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    m = re.search(r"snapshots: (\d+) written, \d+ failed; last (\d+) bytes in ([0-9.]+) ms",
                  p.stderr)
    src = re.search(r"^\s+src\s+source\s+(\d+)", p.stderr, re.M)
    # the process alone, without its snapshot writers (absent before they existed:
    # then everything ran in the process)
    own = re.search(r"cpu: ([0-9.]+) s in this process", p.stderr)
    return {"elapsed": el, "cpu": cpu, "own_cpu": float(own.group(1)) if own else cpu, "snaps": int(m.group(1)) if m else 0,
            "bytes": int(m.group(2)) if m else 0, "ms": float(m.group(3)) if m else 0.0,
            "records": int(src.group(1)) if src else 0}


def io_floor_ms(d, nbytes, reps=3):
    """Write nbytes to a temporary file, fsync, rename, fsync the directory."""
    best = 1e9
    blob = os.urandom(nbytes)
    for _ in range(reps):
        t = time.time()
        tmp, dst = os.path.join(d, "floor.tmp"), os.path.join(d, "floor.bin")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, blob)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, dst)
        dfd = os.open(d, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        best = min(best, (time.time() - t) * 1e3)
    return best


def write_points(path, n, dim, keys=0, seed=3):
    r = random.Random(seed)
    with open(path, "wb") as f:
        for i in range(n):
            rec = {"x": [r.gauss(0, 1) for _ in range(dim)], "y": r.gauss(0, 1)}
            if keys:
                rec["key"] = "k%d" % (i % keys)
            f.write(msgpack.packb(rec))


def last_dict(path):
    with open(path) as f:
        last = f.readlines()[-1]
    return int(re.search(r'"dict":(\d+)', last).group(1))


def row_snapshot_rls(n=1031, dim=64, m=1024):
    """n = 1031: with these points (seed 3) and qbar 16 the dictionary is at
    its cap of 1024 after the last record (printed in the row)."""
    d = tempfile.mkdtemp(prefix="inkbench-state-")
    write_points(os.path.join(d, "in.msgpack"), n, dim)
    res = run_graph(d, """
engine: {snapshot: {dir: snap, every: 0}}
sources:
  src: {type: file, path: in.msgpack}
operators:
  model:
    type: rls_sketch
    inputs: [src]
    dim: %d
    kernel: {type: gaussian, sigma: 1.0}
    qbar: 16
    max_dict: %d
    batch: 64
sinks:
  out: {type: file, path: out.jsonl, inputs: [model]}
""" % (dim, m))
    floor = io_floor_ms(d, res["bytes"])
    dict_ = last_dict(os.path.join(d, "out.jsonl"))
    shutil.rmtree(d, ignore_errors=True)
    return [("snapshot of rls_sketch, dictionary %d (max_dict %d) at d = %d (%.1f MB)" %
             (dict_, m, dim, res["bytes"] / 1e6),
             "%.1f ms" % res["ms"], "write+fsync+rename of as many bytes: %.1f ms" % floor,
             "%.2f" % (res["ms"] / floor if floor else float("nan")))]


KLL_GRAPH = """
engine: {snapshot: {dir: snap, every: %s}}
sources:
  src: {type: file, path: in.msgpack}
operators:
  cdf:
    type: ecdf
    inputs: [src]
    mode: kll
    k: 200
    key_by: key
    max_keys: 10000
sinks:
  out: {type: file, path: /dev/null, format: msgpack, inputs: [cdf]}
"""


def row_snapshot_kll(keys=10000, per_key=60):
    d = tempfile.mkdtemp(prefix="inkbench-state-")
    write_points(os.path.join(d, "in.msgpack"), keys * per_key, 1, keys=keys)
    res = run_graph(d, KLL_GRAPH % "0")
    floor = io_floor_ms(d, res["bytes"])
    shutil.rmtree(d, ignore_errors=True)
    return [("snapshot of ecdf kll (k = 200) per key, %d keys x %d records (%.1f MB)" %
             (keys, per_key, res["bytes"] / 1e6), "%.1f ms" % res["ms"],
             "write+fsync+rename of as many bytes: %.1f ms" % floor,
             "%.2f" % (res["ms"] / floor if floor else float("nan")))]


def row_snapshot_cost(keys=10000, per_key=60, copies=14, reps=3):
    """copies x the 600,000-record input (8.4M records, 285 MB): runs of
    about 30 s, so that each run with snapshots takes about 3 of them."""
    d = tempfile.mkdtemp(prefix="inkbench-state-")
    path = os.path.join(d, "in.msgpack")
    write_points(path, keys * per_key, 1, keys=keys)
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        for _ in range(copies):
            f.write(blob)
    with_s, without, with_cpu, without_cpu, with_own = [], [], [], [], []
    nsnap = 0
    for _ in range(reps):
        r = run_graph(d, KLL_GRAPH % "10s")
        with_s.append(r["records"] / r["elapsed"])
        with_cpu.append(r["records"] / r["cpu"])
        with_own.append(r["records"] / r["own_cpu"])
        nsnap += r["snaps"]
        r = run_graph(d, KLL_GRAPH.replace("engine: {snapshot: {dir: snap, every: %s}}\n", ""))
        without.append(r["records"] / r["elapsed"])
        without_cpu.append(r["records"] / r["cpu"])
    shutil.rmtree(d, ignore_errors=True)
    a, b = max(with_s), max(without)
    ac, bc = max(with_cpu), max(without_cpu)
    return [("throughput with snapshots every 10 s (%d taken over %d runs; 10,000-key KLL), "
             "wall clock" % (nsnap, reps), "%.0f rec/s" % a, "no snapshots: %.0f rec/s" % b,
             "%.3f" % (a / b)),
            ("the same, per CPU second of inkflow, snapshot writers included (robust to a "
             "busy machine)", "%.0f rec/cpu-s" % ac, "no snapshots: %.0f rec/cpu-s" % bc,
             "%.3f" % (ac / bc)),
            ("the same, per CPU second of the data path (the process without its forked "
             "snapshot writers: what the stream can do with its core)",
             "%.0f rec/cpu-s" % max(with_own), "no snapshots: %.0f rec/cpu-s" % bc,
             "%.3f" % (max(with_own) / bc))]


def free_ep():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "tcp://127.0.0.1:%d" % s.getsockname()[1]


def gaps_run(d, yaml_text, n):
    """Run the graph with its zmq push sink read by ink_count --gaps:
    (max gap ms, gaps over 5 ms, snapshots written, records/s at the sink)."""
    cfg = os.path.join(d, "g.yaml")
    with open(cfg, "w") as f:
        f.write(yaml_text)
    os.makedirs(os.path.join(d, "snap"), exist_ok=True)
    ep = yaml_text.split('bind: "')[1].split('"')[0]
    eng = subprocess.Popen([INKFLOW, "run", cfg], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    cnt = subprocess.run([os.path.join(BUILD, "ink_count"), ep, str(n), "120", "--gaps"],
                         capture_output=True, text=True)
    _, err = eng.communicate(timeout=300)
    if eng.returncode != 0 or cnt.returncode != 0:
        raise RuntimeError(err + cnt.stdout + cnt.stderr)
    words = cnt.stdout.split()
    m = re.search(r"snapshots: (\d+) written", err)
    pz = re.search(r"main loop paused ([0-9.]+) ms at most \(([0-9.]+) ms of CPU\)", err)
    return (float(words[words.index("maxgap_ms") + 1]), int(words[words.index("over5ms") + 1]),
            int(m.group(1)) if m else 0,
            (float(pz.group(1)), float(pz.group(2))) if pz else (float("nan"), float("nan")))


PAUSE_GRAPH = """
engine: {snapshot: {dir: snap, every: %s}}
sources:
  src: {type: file, path: in.msgpack}
operators:
  cdf:
    type: ecdf
    inputs: [src]
    mode: kll
    k: 200
    key_by: key
    max_keys: 10000
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [cdf]}
"""


def row_snapshot_pause(keys=10000, per_key=60, copies=6, reps=3):
    """copies x 600,000 records (about 6 s): every key is full after the
    first copy; a snapshot every second, medians of reps alternated runs."""
    d = tempfile.mkdtemp(prefix="inkbench-state-")
    path = os.path.join(d, "in.msgpack")
    write_points(path, keys * per_key, 1, keys=keys)
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        for _ in range(copies):
            f.write(blob)
    n = keys * per_key * copies
    with_s, without, over, over0, pauses, snaps = [], [], [], [], [], 0
    for _ in range(reps):
        g, o, s, pz = gaps_run(d, PAUSE_GRAPH % ("1s", free_ep()), n)
        with_s.append(g)
        pauses.append(pz)
        over.append(o)
        snaps += s
        g, o, _, _ = gaps_run(d, PAUSE_GRAPH.replace("engine: {snapshot: {dir: snap, every: %s}}\n",
                                                     "") % free_ep(), n)
        without.append(g)
        over0.append(o)
    shutil.rmtree(d, ignore_errors=True)
    a, b = statistics.median(with_s), statistics.median(without)
    return [("largest gap between records at the sink, snapshot every 1 s (%d taken over %d "
             "runs; 10,000-key KLL; runs: %s ms; gaps > 5 ms per run: %s)" %
             (snaps, reps, ", ".join("%.1f" % x for x in with_s), over),
             "%.1f ms" % a, "no snapshots: %.1f ms (runs: %s; gaps > 5 ms per run: %s)" %
             (b, ", ".join("%.1f" % x for x in without), over0), "%.2f" % (a / b if b else float("nan"))),
            ("the longest stop of the main loop for a snapshot, as inkflow measures it (the "
             "cut: sinks synced, fork), per run: wall clock (CPU time of the main thread)",
             ", ".join("%.1f (%.1f) ms" % x for x in pauses), "target 5 ms",
             "%.2f (%.2f)" % (statistics.median(x[0] for x in pauses) / 5.0,
                              statistics.median(x[1] for x in pauses) / 5.0))]


def row_fault_loop(kills=30):
    import sys
    sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
    import faultloop
    seed = int(os.environ.get("INK_TEST_SEED", "0")) or random.randrange(1 << 30)
    d = tempfile.mkdtemp(prefix="inkbench-faults-")
    t = time.time()
    res = faultloop.run_loop(INKFLOW, d, kills, seed, log=lambda m: None)
    el = time.time() - t
    shutil.rmtree(d, ignore_errors=True)
    ok = res["identical"] and not res["bad_exit"] and not res["orphans"]
    return [("kill -9 loop, %d kills (seed %d, INK_TEST_SEED to repeat), snapshot every 100 ms, "
             "keyed KLL + keyed exact ecdf, %.0f s" % (kills, seed, el),
             "%d SIGKILLs (%d during a snapshot write); %d restores continued, %d refused "
             "clearly; other exits: %s; writers left alive: %d" %
             (res["kills"], res["in_write"], res["restored"], res["refused"],
              res["bad_exit"] or "none", res["orphans"]),
             "uninterrupted run: %d bytes of output" % res.get("ref_bytes", -1),
             "output identical" if ok else "FAILED")]


ROWS = {"snapshot_rls": row_snapshot_rls, "snapshot_kll": row_snapshot_kll,
        "snapshot_cost": row_snapshot_cost, "snapshot_pause": row_snapshot_pause,
        "fault_loop": row_fault_loop}

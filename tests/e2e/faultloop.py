"""The kill -9 loop of issue 20, shared by tests/e2e/test_faults.py (short, in
ctest) and bench/rows_state.py (`bench/run fault_loop`, long).

A keyed graph (file source, keyed KLL ecdf, file sink) with a snapshot every
100 ms is killed with SIGKILL at random moments, half of them while a
snapshot writer child is alive (found in /proc), and resumed with --restore,
again and again; then the last restore runs to the end. Every restore must
either continue (exit 0 or our SIGKILL) or refuse clearly (exit 2 with a
message; then the run starts afresh, as an operator would); nothing may
crash or leave a writer behind, and the final output must be byte for byte
the output of an uninterrupted run."""
import os
import random
import signal
import subprocess
import time

GRAPH = """
engine:
  seed: 9
  snapshot: {dir: snap, every: 100ms}
sources:
  src: {type: file, path: in.msgpack%(rate)s}
operators:
  cdf: {type: ecdf, inputs: [src], mode: kll, k: 200, key_by: key, max_keys: 2000}
  win:
    type: ecdf
    inputs: [src]
    mode: exact
    dim: 1
    window: 300
    key_by: key
    max_keys: 150
    on_new_key: evict
sinks:
  out: {type: file, path: out.jsonl, inputs: [cdf, win]}
"""


def make_input(path, n, seed=5):
    import msgpack
    r = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(msgpack.packb({"x": [r.gauss(0, 1)], "key": "k%d" % r.randrange(2000)}))


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def gone(pid, timeout=5):
    t = time.time() + timeout
    while time.time() < t:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True  # a zombie: dead, waiting for its reaper
        except OSError:
            return True
        time.sleep(0.002)
    return False


def run_loop(inkflow, workdir, kills, seed, rate=10000, log=print):
    """Returns a dict of counts and 'identical' (final output == reference).
    The input lasts about 0.7 s per kill plus 2 s at `rate` records/s (kills
    come 0.05-1.2 s after each start), so the loop rarely runs out of input
    before its last kill."""
    rng = random.Random(seed)
    n = int(rate * (0.7 * kills + 2))
    os.makedirs(workdir, exist_ok=True)
    data = os.path.join(workdir, "in.msgpack")
    make_input(data, n)
    res = {"kills": 0, "in_write": 0, "restored": 0, "refused": 0, "fresh": 0, "bad_exit": [],
           "orphans": 0, "identical": False}

    def setup(name, paced):
        d = os.path.join(workdir, name)
        os.makedirs(d, exist_ok=True)
        os.symlink(data, os.path.join(d, "in.msgpack"))
        cfg = os.path.join(d, "graph.yaml")
        with open(cfg, "w") as f:
            # the pace changes no output: the reference runs at full speed
            f.write(GRAPH % {"rate": ", rate: %d" % rate if paced else ""})
        return d, cfg

    ref_dir, ref_cfg = setup("ref", False)
    p = subprocess.run([inkflow, "run", ref_cfg], capture_output=True, timeout=300)
    if p.returncode != 0:
        res["bad_exit"].append(("reference", p.returncode, p.stderr.decode()[-300:]))
        return res
    with open(os.path.join(ref_dir, "out.jsonl"), "rb") as f:
        ref = f.read()

    d, cfg = setup("loop", True)
    restore = False
    # A kill before the first snapshot is durable leaves nothing to restore:
    # that restore is refused and the run starts afresh, without using up a
    # kill, so a slow machine gets as many kills as a fast one (bounded).
    i = -1
    while True:
        i += 1
        args = [inkflow, "run", cfg] + (["--restore"] if restore else [])
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        last = res["kills"] >= kills or i >= 4 * kills
        in_write = False
        writer = None
        if not last:
            deadline = time.time() + rng.uniform(0.05, 1.2)
            want_write = rng.random() < 0.5
            while time.time() < deadline and proc.poll() is None:
                kids = children(proc.pid)
                if want_write and kids:
                    writer, in_write = kids[0], True
                    break
                time.sleep(0.0005)
            if proc.poll() is None:
                kids = children(proc.pid)
                writer = writer or (kids[0] if kids else None)
                in_write = in_write or bool(kids)
                os.kill(proc.pid, signal.SIGKILL)
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            res["bad_exit"].append((i, "hung", ""))
            continue
        err = err.decode()
        rc = proc.returncode
        if rc == -signal.SIGKILL and not last:
            res["kills"] += 1
            res["in_write"] += in_write
            if writer and not gone(writer):
                res["orphans"] += 1
                os.kill(writer, signal.SIGKILL)
            if restore:
                res["restored"] += 1
            restore = True
            log("kill %d: SIGKILL%s" % (i, " during a snapshot write" if in_write else ""))
            continue
        if rc == 2 and restore and "--restore" in err:
            # refused clearly: say why and start afresh
            res["refused"] += 1
            res["fresh"] += 1
            log("restore %d refused: %s" % (i, err.strip().splitlines()[-1][:160]))
            restore = False
            continue
        if rc == 0:
            if restore:
                res["restored"] += 1
            break
        res["bad_exit"].append((i, rc, err[-300:]))
        restore = True
    # whatever happened, finish the job (a refused last restore starts afresh)
    if rc != 0:
        p = subprocess.run([inkflow, "run", cfg] + (["--restore"] if restore else []),
                           capture_output=True, timeout=300)
        if p.returncode != 0:
            res["bad_exit"].append(("final", p.returncode, p.stderr.decode()[-300:]))
    with open(os.path.join(d, "out.jsonl"), "rb") as f:
        res["identical"] = f.read() == ref
    res["ref_bytes"] = len(ref)
    return res

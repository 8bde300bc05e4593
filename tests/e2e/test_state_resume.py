"""Snapshots and exact resume through the real binary (docs/state.md).

A 200,000-record file source feeds rls_sketch, bkb, ecdf (grid) and a keyed
ecdf (exact windows, one state per key, 8 keys for 6 slots: least recently
used keys are evicted all the time, so the restored LRU order matters) into
one file sink. Checks:
- kill -9 at a random point, then --restore: the output file is byte for byte
  the output of an uninterrupted run (the restore cuts it back to what the
  snapshot saw and continues from the snapshot's source offset);
- SIGTERM: a final snapshot at the point reached, restore continues from
  exactly there (same bytes again);
- missing, truncated, corrupt (one flipped byte, several positions) and
  mismatched (edited config) snapshots are refused with exit 2, the snapshot
  file and the output file unchanged."""
import hashlib
import os
import random
import re
import shutil
import signal
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402

N = 200000
EVERY = 20000
rng = random.Random(int(os.environ.get("INK_TEST_SEED", "0")) or random.randrange(1 << 30))
seed_note = rng.randrange(1 << 30)
rng = random.Random(seed_note)
print("random seed %d (INK_TEST_SEED to repeat)" % seed_note)

GRAPH = """
engine:
  seed: 42
  snapshot: {dir: snap, every: 0, every_records: %(every)d}
sources:
  src: {type: file, path: in.msgpack}
operators:
  rls:
    type: rls_sketch
    inputs: [src]
    dim: 2
    kernel: {type: gaussian, sigma: 0.5}
    gamma: 1.0
    qbar: 4
    max_dict: 32
    batch: 16
    predict: true
  bandit:
    type: bkb
    inputs: [src]
    arms: {grid: {lo: [0, 0], hi: [1, 1], n: 5}}
    kernel: {type: gaussian, sigma: 0.3}
    lambda: 0.01
    noise_var: 0.01
    max_dict: 32
    batch: {ratio: 2}
  cdf:
    type: ecdf
    inputs: [src]
    mode: grid
    grid: {lo: [0, 0], hi: [1, 1], n: [5, 5]}
  perkey:
    type: ecdf
    inputs: [src]
    mode: exact
    dim: 2
    window: 500
    key_by: key
    max_keys: 6
    on_new_key: evict
sinks:
  out: {type: file, path: out.msgpack, inputs: [rls, bandit, cdf, perkey]}
"""


def make_input(path):
    r = random.Random(7)
    with open(path, "wb") as f:
        for i in range(N):
            a = r.randrange(25)
            x = [(a % 5) / 4.0, (a // 5) / 4.0]
            y = x[0] * 0.5 - (x[1] - 0.3) ** 2 + r.gauss(0, 0.1)
            f.write(msgpack.packb({"t": i, "key": "s%d" % r.randrange(8), "arm": a, "x": x,
                                   "y": y}))


base = inkt.tmpdir()
data = os.path.join(base, "in.msgpack")
make_input(data)


def workdir(name, every=EVERY):
    d = os.path.join(base, name)
    os.makedirs(os.path.join(d, "snap"))
    os.symlink(data, os.path.join(d, "in.msgpack"))
    return d, inkt.write_config(d, GRAPH % {"every": every})


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def restored_at(stderr):
    m = re.search(r"restored from \S+ \((\d+) source records in\)", stderr)
    return int(m.group(1)) if m else -1


# --- the reference: one uninterrupted run --------------------------------------
ref_dir, ref_cfg = workdir("ref")
t = time.time()
p = inkt.run([inkt.INKFLOW, "run", ref_cfg], timeout=300)
inkt.check(p.returncode == 0, "uninterrupted run exits 0 (%.1f s)" % (time.time() - t))
ref_out = os.path.join(ref_dir, "out.msgpack")
with open(ref_out, "rb") as f:
    ref = f.read()
row = inkt.summary_row(p.stderr.decode(), "src")
inkt.check(row and row["in"] == N, "reference read %d records" % N)
snap_ref = os.path.join(ref_dir, "snap", "graph.snap")
inkt.check(os.path.exists(snap_ref), "a snapshot is left at the natural end")


def run_until(d, cfg, frac, sig):
    """Start a run, wait until its output holds frac of the reference bytes, signal it."""
    out = os.path.join(d, "out.msgpack")
    proc = inkt.start([inkt.INKFLOW, "run", cfg])
    target = int(len(ref) * frac)
    inkt.wait_for(lambda: os.path.exists(out) and os.path.getsize(out) >= target
                  or proc.poll() is not None, timeout=120, step=0.005)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return alive, proc.returncode, err.decode()


# --- kill -9 at a random point, restore ----------------------------------------
kill_dir, kill_cfg = workdir("kill")
frac = rng.uniform(0.15, 0.9)
alive, rc, _ = run_until(kill_dir, kill_cfg, frac, signal.SIGKILL)
inkt.check(alive and rc == -signal.SIGKILL, "killed with SIGKILL at %.0f%% of the output" %
           (100 * frac))
kill_out = os.path.join(kill_dir, "out.msgpack")
at_kill = os.path.getsize(kill_out)
p = inkt.run([inkt.INKFLOW, "run", kill_cfg, "--restore"], timeout=300)
err = p.stderr.decode()
k = restored_at(err)
inkt.check(p.returncode == 0, "--restore after kill -9 exits 0")
inkt.check(0 < k < N and k % EVERY == 0,
           "restored from a periodic snapshot at %d records (a multiple of %d)" % (k, EVERY))
with open(kill_out, "rb") as f:
    got = f.read()
inkt.check(got == ref, "output after kill -9 + restore is byte-identical to the uninterrupted "
           "run (%d bytes; %d were on disk at the kill)" % (len(got), at_kill))
row = inkt.summary_row(err, "src")
inkt.check(row and row["in"] == N, "counters continue from the snapshot: src in = %s" %
           (row and row["in"]))

# --- SIGTERM: final snapshot at the point reached, restore from exactly there -----
term_dir, term_cfg = workdir("term", every=0)
frac = rng.uniform(0.2, 0.8)
alive, rc, err = run_until(term_dir, term_cfg, frac, signal.SIGTERM)
inkt.check(alive and rc == 0, "SIGTERM at %.0f%%: drained and exited 0 (rc %s)" %
           (100 * frac, rc))
row = inkt.summary_row(err, "src")
stopped_at = row["in"] if row else -1
term_snap = os.path.join(term_dir, "snap", "graph.snap")
inkt.check(os.path.exists(term_snap), "SIGTERM wrote a final snapshot")
p = inkt.run([inkt.INKFLOW, "run", term_cfg, "--restore"], timeout=300)
k = restored_at(p.stderr.decode())
inkt.check(p.returncode == 0 and k == stopped_at and 0 < k < N,
           "restore continues from exactly where SIGTERM stopped (%d = %d)" % (k, stopped_at))
with open(os.path.join(term_dir, "out.msgpack"), "rb") as f:
    inkt.check(f.read() == ref, "output after SIGTERM + restore is byte-identical")

# --- refused snapshots: exit 2, snapshot and output untouched -----------------------
bad_dir, bad_cfg = workdir("bad")
shutil.copy(ref_out, os.path.join(bad_dir, "out.msgpack"))
good = open(snap_ref, "rb").read()
bad_snap = os.path.join(bad_dir, "snap", "graph.snap")
bad_out = os.path.join(bad_dir, "out.msgpack")
out_sha = sha(bad_out)


def refused(label, want):
    before = sha(bad_snap) if os.path.exists(bad_snap) else None
    p = inkt.run([inkt.INKFLOW, "run", bad_cfg, "--restore"], timeout=60)
    err = p.stderr.decode()
    after = sha(bad_snap) if os.path.exists(bad_snap) else None
    inkt.check(p.returncode == 2 and want in err,
               "%s snapshot refused with exit 2 and '%s' (rc %d: %s)" %
               (label, want, p.returncode, err.strip().splitlines()[-1] if err else ""))
    inkt.check(before == after and sha(bad_out) == out_sha,
               "%s: snapshot file and output unchanged" % label)


refused("missing", "nothing to restore")
with open(bad_snap, "wb") as f:
    f.write(good[: len(good) // 2])
refused("truncated", "truncated")
with open(bad_snap, "wb") as f:
    f.write(good[:20])
refused("truncated to 20 bytes", "truncated")
for pos in [rng.randrange(32, len(good) - 4) for _ in range(4)] + [9, len(good) - 1]:
    b = bytearray(good)
    b[pos] ^= 1 << rng.randrange(8)
    with open(bad_snap, "wb") as f:
        f.write(bytes(b))
    refused("one flipped byte at %d" % pos, "refused")
with open(bad_snap, "wb") as f:
    f.write(good)
with open(bad_cfg) as f:
    text = f.read()
with open(bad_cfg, "w") as f:
    f.write(text.replace("gamma: 1.0", "gamma: 2.0"))
refused("mismatched (edited config)", "different config")
with open(bad_cfg, "w") as f:
    f.write(text)
p = inkt.run([inkt.INKFLOW, "run", bad_cfg, "--restore"], timeout=60)
inkt.check(p.returncode == 0 and restored_at(p.stderr.decode()) == N and
           sha(bad_out) == out_sha, "the intact snapshot (end of input) restores; nothing to add")
shutil.rmtree(base, ignore_errors=True)  # four 80 MB outputs
inkt.finish()

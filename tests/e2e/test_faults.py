"""State under faults (docs/state.md, "One owner" and "Faults").

- One owner: a second `inkflow run` of a config whose snapshot directory, or
  whose file sink, belongs to a running inkflow is refused at start with
  exit 2 and a message naming the owner's pid; `--restore` too; the owner's
  output is then byte for byte the output of a run nobody disturbed."""
import hashlib
import os
import random
import shutil
import subprocess
import sys

import msgpack

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
from inkprom import get  # noqa: E402

N = 60000
GRAPH = """
engine:
  seed: 5
  snapshot: {dir: %(snap)s, every: %(every)s}
sources:
  src: {type: file, path: in.msgpack%(rate)s}
operators:
  cdf: {type: ecdf, inputs: [src], mode: kll, k: 64, key_by: key, max_keys: 200}
sinks:
  out: {type: file, path: %(out)s, inputs: [cdf]}
"""

base = inkt.tmpdir()
data = os.path.join(base, "in.msgpack")
r = random.Random(11)
with open(data, "wb") as f:
    for i in range(N):
        f.write(msgpack.packb({"x": [r.random()], "key": "k%d" % r.randrange(300)}))


def workdir(name, snap="snap", every="100ms", rate=0, out="out.jsonl", cfg="graph.yaml", d=None):
    d = d or os.path.join(base, name)
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, "in.msgpack")):
        os.symlink(data, os.path.join(d, "in.msgpack"))
    text = GRAPH % {"snap": snap, "every": every, "out": out,
                    "rate": ", rate: %d" % rate if rate else ""}
    return d, inkt.write_config(d, text, cfg)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def last_line(b):
    lines = b.decode().strip().splitlines()
    return lines[-1] if lines else ""


ref_dir, ref_cfg = workdir("ref")
p = inkt.run([inkt.INKFLOW, "run", ref_cfg])
inkt.check(p.returncode == 0, "reference run exits 0")
ref_sha = sha(os.path.join(ref_dir, "out.jsonl"))

# --- one owner: the snapshot directory, the sink, --restore ----------------------
own_dir, own_cfg = workdir("owner", rate=N // 4)  # about 4 s
owner = inkt.start([inkt.INKFLOW, "run", own_cfg])
lock = os.path.join(own_dir, "snap", "graph.lock")
inkt.check(inkt.wait_for(lambda: os.path.exists(lock) and
                         open(lock).read().strip() == str(owner.pid), timeout=30),
           "the running inkflow holds snap/graph.lock (its pid %d written in it)" % owner.pid)
snap = os.path.join(own_dir, "snap", "graph.snap")
inkt.wait_for(lambda: os.path.exists(snap), timeout=30)
# same config: the snapshot's lock is taken first
p = inkt.run([inkt.INKFLOW, "run", own_cfg], timeout=30)
err = p.stderr.decode()
inkt.check(p.returncode == 2 and "pid %d" % owner.pid in err and "graph.lock" in err,
           "a second run of the same config is refused, exit 2, naming pid %d (rc %d: %s)" %
           (owner.pid, p.returncode, last_line(p.stderr)))
p = inkt.run([inkt.INKFLOW, "run", own_cfg, "--restore"], timeout=30)
err = p.stderr.decode()
inkt.check(p.returncode == 2 and "pid %d" % owner.pid in err,
           "--restore under a live owner is refused, exit 2 (rc %d: %s)" %
           (p.returncode, last_line(p.stderr)))
# another config (its own snapshot dir) writing the same output file
_, other_cfg = workdir("owner", snap="snap2", cfg="other.yaml", d=own_dir)
p = inkt.run([inkt.INKFLOW, "run", other_cfg], timeout=30)
err = p.stderr.decode()
inkt.check(p.returncode == 2 and "pid %d" % owner.pid in err and "out.jsonl" in err,
           "another config writing the same file sink is refused, exit 2, naming pid %d "
           "(rc %d: %s)" % (owner.pid, p.returncode, last_line(p.stderr)))
inkt.check(not os.path.exists(os.path.join(own_dir, "snap2", "other.snap")),
           "the refused instance wrote no snapshot")
# two sinks of one config naming the same file: refused too (this process holds it)
_, twin_cfg = workdir("twin")
with open(twin_cfg) as f:
    text = f.read()
with open(twin_cfg, "w") as f:
    f.write(text + "  out2: {type: file, path: out.jsonl, inputs: [cdf]}\n")
p = inkt.run([inkt.INKFLOW, "run", twin_cfg], timeout=30)
inkt.check(p.returncode == 2 and b"this process" in p.stderr,
           "two sinks of one graph on the same file are refused (rc %d: %s)" %
           (p.returncode, last_line(p.stderr)))
_, perr = owner.communicate(timeout=120)
inkt.check(owner.returncode == 0, "the owner ran to its end, exit 0")
inkt.check(sha(os.path.join(own_dir, "out.jsonl")) == ref_sha,
           "the owner's output is byte-identical to an undisturbed run")


def with_http(cfg, port):
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace("engine:\n", 'engine:\n  http: {listen: "127.0.0.1:%d"}\n' % port))


# --- the snapshot directory removed while running: re-created -----------------------
rm_dir, rm_cfg = workdir("removed", rate=N // 3)
proc = inkt.start([inkt.INKFLOW, "run", rm_cfg])
snapdir = os.path.join(rm_dir, "snap")
inkt.wait_for(lambda: os.path.exists(os.path.join(snapdir, "graph.snap")), timeout=30)
# moved away, then deleted: atomic, whatever a snapshot in flight is doing
os.rename(snapdir, snapdir + ".old")
shutil.rmtree(snapdir + ".old")
inkt.check(inkt.wait_for(lambda: os.path.exists(os.path.join(snapdir, "graph.snap")) or
                         proc.poll() is not None, timeout=30) and proc.poll() is None,
           "a removed snapshot directory is re-created and snapshots go on")
_, err = proc.communicate(timeout=120)
err = err.decode()
inkt.check(proc.returncode == 0 and "re-created" in err,
           "the run says so and exits 0 (rc %d)" % proc.returncode)
p = inkt.run([inkt.INKFLOW, "run", rm_cfg, "--restore"], timeout=60)
inkt.check(p.returncode == 0 and sha(os.path.join(rm_dir, "out.jsonl")) == ref_sha,
           "its final snapshot restores (nothing to add, output byte-identical)")

# --- removed with its parent: cannot be re-created safely; loud -----------------------
gone_dir, gone_cfg = workdir("gone", snap="state/snap", rate=N // 3)
port = inkt.free_port()
with_http(gone_cfg, port)
state = os.path.join(gone_dir, "state")
os.makedirs(os.path.join(state, "snap"))
proc = inkt.start([inkt.INKFLOW, "run", gone_cfg])
inkt.wait_for(lambda: os.path.exists(os.path.join(state, "snap", "graph.snap")), timeout=30)
inkt.check(get(port, "/health")[0] == 200, "/health 200 while snapshots succeed")
os.rename(state, state + ".old")
shutil.rmtree(state + ".old")
inkt.check(inkt.wait_for(lambda: get(port, "/health")[0] == 503, timeout=30),
           "/health turns 503 after max_failures (3) snapshots failed in a row")
code, body = get(port, "/health")
inkt.check("snapshots failed in a row" in body and "No such file or directory" in body,
           "/health says why: %s" % body.strip()[:160])
code, body = get(port, "/ready")
inkt.check(code == 503 and "snapshot" in body, "/ready 503 and says why: %s" % body.strip()[:100])
code, body = get(port, "/metrics")
fails = [int(float(line.split()[1])) for line in body.splitlines()
         if line.startswith("inkflow_snapshot_failures_total ")]
inkt.check(fails and fails[0] >= 3, "inkflow_snapshot_failures_total counts them (%s)" % fails)
_, err = proc.communicate(timeout=120)
err = err.decode()
inkt.check(proc.returncode == 1, "the run whose last snapshot failed exits 1 (rc %d)" %
           proc.returncode)
inkt.check("no snapshot on disk" in err and "the previous one is kept" not in err,
           "the log says no snapshot is left, not that one is kept")

# --- a full filesystem under the snapshot directory, then under a file sink ------------
mounts = []


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", path], check=True)
    mounts.append(path)


def umount_all():
    for m in reversed(mounts):
        subprocess.run(["umount", "-l", m], capture_output=True)
    del mounts[:]


def full_disk_case(label, snap, out, size_of, files_on):
    d, cfg = workdir("full-" + label, snap=snap, out=out, rate=N // 3)
    mnt = os.path.join(d, files_on)
    size = size_of
    mount_tmpfs(mnt, size)
    os.makedirs(os.path.join(d, snap), exist_ok=True)
    p = inkt.run([inkt.INKFLOW, "run", cfg], timeout=120)
    err = p.stderr.decode()
    m = __import__("re").search(r"snapshots: (\d+) written, (\d+) failed", err)
    written, failed = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    inkt.check(p.returncode == 1 and failed > 0 and "No space left on device" in err,
               "%s: reported (No space left on device), %d snapshots failed, %d written, "
               "exit 1 (rc %d)" % (label, failed, written, p.returncode))
    inkt.check("is kept" in err and written > 0,
               "%s: the log says the previous snapshot is kept" % label)
    subprocess.run(["mount", "-o", "remount,size=%d" % (64 << 20), mnt], check=True)
    p = inkt.run([inkt.INKFLOW, "run", cfg, "--restore"], timeout=120)
    inkt.check(p.returncode == 0 and b"restored from" in p.stderr and
               sha(os.path.join(d, out)) == ref_sha,
               "%s: with room again, --restore from the last good snapshot gives the "
               "uninterrupted run's output (rc %d)" % (label, p.returncode))


if os.geteuid() != 0:
    print("skip full-filesystem cases: they mount a small tmpfs, which needs root")
else:
    try:
        snap_size = os.path.getsize(os.path.join(ref_dir, "snap", "graph.snap"))
        out_size = os.path.getsize(os.path.join(ref_dir, "out.jsonl"))
        # the new snapshot and the previous one do not fit together near the end
        full_disk_case("snapshot dir", "state/snap", "out.jsonl", int(snap_size * 1.5), "state")
        full_disk_case("file sink", "snap", "outdir/out.jsonl", out_size // 2, "outdir")
    finally:
        umount_all()

# --- kill -9 at random moments (half of them during a snapshot write), --restore -------
import faultloop  # noqa: E402

seed = int(os.environ.get("INK_TEST_SEED", "0")) or random.randrange(1 << 30)
print("fault loop seed %d (INK_TEST_SEED to repeat)" % seed)
res = faultloop.run_loop(inkt.INKFLOW, os.path.join(base, "loop"), 8, seed,
                         log=lambda m: print("     " + m))
inkt.check(res["kills"] == 8, "the graph was killed with SIGKILL %d times (%d during a snapshot "
           "write)" % (res["kills"], res["in_write"]))
inkt.check(res["restored"] + res["refused"] >= res["kills"],
           "every restore continued (%d) or refused clearly (%d)" %
           (res["restored"], res["refused"]))
inkt.check(not res["bad_exit"], "no crash, no other exit status: %s" % res["bad_exit"])
inkt.check(res["orphans"] == 0, "no snapshot writer outlived its killed parent")
inkt.check(res["identical"], "the final output is byte-identical to an uninterrupted run "
           "(%d bytes)" % res.get("ref_bytes", -1))

shutil.rmtree(base, ignore_errors=True)
inkt.finish()

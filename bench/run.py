"""The benchmark table. Every row is a ratio against a baseline measured in
the same run on the same machine; nothing here is asserted by the tests.

    bench/run            all rows
    bench/run passthrough  one row
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
INKFLOW = os.path.join(BUILD, "inkflow")


def free_ep():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "tcp://127.0.0.1:%d" % s.getsockname()[1]


def three_process(forwarder_cmd, ein, eout, n, dim):
    """sender -> forwarder -> receiver; returns records/s at the receiver."""
    fwd = subprocess.Popen(forwarder_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        time.sleep(0.3)
        cnt = subprocess.Popen([os.path.join(BUILD, "ink_count"), eout, str(n), "60"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(0.2)
        subprocess.run([os.path.join(BUILD, "ink_blast"), ein, str(n), str(dim), "--eos"],
                       check=True, stderr=subprocess.DEVNULL)
        out, _ = cnt.communicate(timeout=120)
        if cnt.returncode != 0:
            raise RuntimeError("receiver got fewer records than sent: " + out)
        return float(out.split()[-1])
    finally:
        os.killpg(fwd.pid, signal.SIGKILL)
        fwd.wait()


def row_passthrough(n=2000000, dim=8, reps=3):
    tmp = tempfile.mkdtemp(prefix="inkbench-")
    eng, base = [], []
    for _ in range(reps):
        ein, eout = free_ep(), free_ep()
        base.append(three_process([os.path.join(BUILD, "fwd_baseline"), ein, eout], ein, eout, n, dim))
        ein, eout = free_ep(), free_ep()
        cfg = os.path.join(tmp, "pt.yaml")
        with open(cfg, "w") as f:
            f.write("""
sources:
  feed: {type: zmq, socket: pull, bind: "%s"}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [pass]}
""" % (ein, eout))
        eng.append(three_process([INKFLOW, "run", cfg], ein, eout, n, dim))
    e, b = statistics.median(eng), statistics.median(base)
    return [("passthrough zmq pull -> passthrough -> zmq push, %d-dim, %d records" % (dim, n),
             "%.0f rec/s" % e, "C forwarder (pull, msgpack-c decode+encode, push): %.0f rec/s" % b,
             "%.2f" % (e / b))]


ROWS = {"passthrough": row_passthrough}


def load_row_modules():
    """Each bench/rows_NAME.py defines ROWS = {name: function}; a function
    returns a list of (row, inkflow, baseline, ratio) tuples of strings."""
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    for fn in sorted(os.listdir(here)):
        if fn.startswith("rows_") and fn.endswith(".py"):
            spec = importlib.util.spec_from_file_location(fn[:-3], os.path.join(here, fn))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            ROWS.update(mod.ROWS)


def main():
    subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", BUILD, "-j2"], check=True, stdout=subprocess.DEVNULL)
    load_row_modules()
    want = sys.argv[1:] or list(ROWS)
    print("| row | inkflow | baseline (same run) | ratio |")
    print("| --- | --- | --- | --- |")
    for name in want:
        for r in ROWS[name]():
            print("| %s | %s | %s | %s |" % r)
            sys.stdout.flush()


if __name__ == "__main__":
    main()

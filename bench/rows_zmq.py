"""ZeroMQ transport rows.

    bench/run eos_notice

`eos_notice`: what a pull receiver pays per record to notice senders that take
part in the end-of-stream exchange (docs/wire-format.md#end-of-stream): one
zmq_msg_gets of the X-Inkflow-Eos property, for a record from a plain sender and
from an already greeted negotiating one, against decoding the same 8-dim record
(ink_decode_msgpack, done to every record anyway) in the same run (bench_eos,
5M calls each, median of 5 runs).
"""
import os
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "bench_eos")


def run_once():
    out = subprocess.run([BENCH], capture_output=True, text=True, check=True).stdout
    return {ln.split()[0]: float(ln.split()[1]) for ln in out.splitlines() if len(ln.split()) == 3}


def row_eos_notice(reps=5):
    runs = [run_once() for _ in range(reps)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    dec = med["decode_ns"]
    rows = []
    for k, what in (("notice_plain_ns", "plain sender"),
                    ("notice_negotiating_ns", "negotiating sender")):
        rows.append(("eos_notice: pull receiver's per-record check, %s" % what,
                     "%.1f ns/record" % med[k], "decode of the same 8-dim record: %.1f ns" % dec,
                     "%.2f" % (med[k] / dec)))
    return rows


ROWS = {"eos_notice": row_eos_notice}

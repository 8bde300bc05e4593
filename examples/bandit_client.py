#!/usr/bin/python3
"""Optimise a function through inkflow's bkb service (configs/bandit.yaml),
with several workers evaluating points in parallel.

    ./build/inkflow run configs/bandit.yaml &
    /usr/bin/python3 examples/bandit_client.py --workers 4 --budget 200

Each worker (a thread with its own REQ socket) loops: ask for a point, evaluate
the function there, tell the reward. Points that are asked but not yet told
are pending in the service, so two workers never evaluate the same arm at once.
Needs Debian's python3-zmq and python3-msgpack.
"""
import argparse
import math
import random
import threading
import time

import msgpack
import zmq


def objective(x):
    """A smooth function on the unit square: the global maximum 1.0 at
    (0.7, 0.3) and a wider local maximum 0.8 at (0.25, 0.75)."""
    a = math.exp(-((x[0] - 0.7) ** 2 + (x[1] - 0.3) ** 2) / 0.04)
    b = 0.8 * math.exp(-((x[0] - 0.25) ** 2 + (x[1] - 0.75) ** 2) / 0.05)
    return a + b


class Service:
    """One REQ socket: one request, one reply (a dict; raises on an error reply)."""

    def __init__(self, ctx, endpoint, timeout):
        self.sock = ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        self.sock.connect(endpoint)
        self.endpoint, self.timeout = endpoint, timeout

    def call(self, **req):
        self.sock.send(msgpack.packb(req, use_bin_type=True))
        try:
            reply = msgpack.unpackb(self.sock.recv(), raw=False)
        except zmq.Again:
            raise RuntimeError("no reply from %s within %.1f s" % (self.endpoint, self.timeout))
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self):
        self.sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5560")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--budget", type=int, default=200, help="total evaluations")
    ap.add_argument("--noise", type=float, default=0.0, help="sd of the evaluation noise")
    ap.add_argument("--cost", type=float, default=0.0, help="seconds one evaluation takes")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a reply")
    args = ap.parse_args()

    ctx = zmq.Context()
    lock = threading.Lock()
    state = {"left": args.budget, "done": 0, "best": (-math.inf, None, None), "errors": []}

    def worker(wid):
        svc = Service(ctx, args.endpoint, args.timeout)
        rng = random.Random(wid)
        try:
            while True:
                with lock:
                    if state["left"] <= 0:
                        return
                    state["left"] -= 1
                s = svc.call(op="ask")
                x = s["x"]
                time.sleep(args.cost)  # the expensive experiment
                y = objective(x) + rng.gauss(0, args.noise)
                svc.call(op="tell", arm=s["arm"], y=y)
                with lock:
                    state["done"] += 1
                    if y > state["best"][0]:
                        state["best"] = (y, x, s["arm"])
                        print("worker %d  eval %3d  new best y = %.4f at x = [%s]"
                              % (wid, state["done"], y, ", ".join("%.4f" % v for v in x)),
                              flush=True)
        except Exception as e:  # a refused request or no reply: report it, stop this worker
            with lock:
                state["errors"].append("worker %d: %s" % (wid, e))
        finally:
            svc.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.workers)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctx.term()
    for e in state["errors"]:
        print("error: " + e)
    y, x, arm = state["best"]
    if x is None:
        print("no evaluation completed")
        return 1
    print("best y = %.6f at x = [%s] (arm %d), %d evaluations by %d workers in %.2f s"
          % (y, ", ".join("%.6f" % v for v in x), arm, state["done"], args.workers,
             time.time() - t0))
    return 1 if state["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

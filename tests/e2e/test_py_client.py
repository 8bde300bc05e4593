"""End to end: the Python package (python/inkflow, from the source tree)
against the real binary: Study ask/tell on the bkb service of
configs/bandit.yaml, error replies raised as ServiceError, timeouts, and
send/recv through a zmq pull -> passthrough -> zmq push graph."""
import math
import os
import signal
import sys
import threading

import inkt

sys.path.insert(0, os.path.join(inkt.ROOT, "python"))
import inkflow  # noqa: E402

d = inkt.tmpdir()
ep = inkt.endpoint()
with open(os.path.join(inkt.ROOT, "configs", "bandit.yaml")) as f:
    cfg = inkt.write_config(d, f.read().replace("tcp://127.0.0.1:5560", ep), "bandit.yaml")
graph = inkt.start([inkt.INKFLOW, "run", cfg], stdout=open(os.path.join(d, "log.jsonl"), "w"))


def up():
    try:
        inkflow.request(ep, {"op": "predict", "arm": 0}, timeout=1)
        return True
    except inkflow.Timeout:
        return False


inkt.check(inkt.wait_for(up, timeout=30), "service answers")


def reward(x):
    return math.exp(-((x[0] - 0.7) ** 2 + (x[1] - 0.3) ** 2) / 0.08)


study = inkflow.Study(ep, timeout=10)
t = study.ask()
inkt.check(isinstance(t, inkflow.Trial) and 0 <= t.arm < 1600 and len(t.x) == 2 and t.params == {},
           "ask -> Trial with arm %d, x %s, params %s" % (t.arm, t.x, t.params))
r = study.tell(t, reward(t.x))
inkt.check(r.get("pulls") == 1, "tell(trial, value) is learnt: %s" % r)

# error replies become ServiceError with the service's message
try:
    study.tell(t, 0.5)
    inkt.check(False, "telling a trial twice raises")
except inkflow.ServiceError as e:
    inkt.check("not waiting" in str(e) and e.reply.get("error"), "tell twice: ServiceError(%s)" % e)
try:
    study.tell(10 ** 6, 0.5)
    inkt.check(False, "tell of an unknown arm raises")
except inkflow.ServiceError as e:
    inkt.check("out of range" in str(e), "tell unknown arm: ServiceError(%s)" % e)
try:
    study.tell(t, float("nan"))
    inkt.check(False, "tell of NaN raises")
except ValueError as e:
    inkt.check("not finite" in str(e), "tell NaN: ValueError before sending (%s)" % e)
batch = study.ask(n=3)
inkt.check(len(batch) == 3 and len({b.arm for b in batch}) == 3, "ask(n=3): 3 distinct trials")
for b in batch:
    study.tell(b.arm, reward(b.x))

# one Study shared by 4 threads (a socket per thread): 60 evaluations, distinct pending arms
best = [max([reward(t.x)] + [reward(b.x) for b in batch])]
lock = threading.Lock()
errors = []


def worker(k):
    try:
        for _ in range(15):
            tr = study.ask()
            y = reward(tr.x)
            study.tell(tr, y)
            with lock:
                best[0] = max(best[0], y)
    except Exception as e:  # noqa: BLE001 (reported below)
        errors.append(repr(e))


ths = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for th in ths:
    th.start()
for th in ths:
    th.join()
inkt.check(not errors, "4 threads on one Study: no errors %s" % errors[:2])
# (how well it learns depends on the threads' interleaving: test_bkb_service
# and test_bandit_client check that; here every tell must be learnt)
b = study.best()
inkt.check(b.told == 64 and b.value == best[0], "64 tells learnt, best %.4f = the best told (%.4f)"
           % (b.value, best[0]))
study.close()

# a timeout is an exception, not a hang; the study is usable afterwards
dead = inkflow.Study(inkt.endpoint(), timeout=0.3)
try:
    dead.ask()
    inkt.check(False, "ask against nothing raises Timeout")
except inkflow.Timeout as e:
    inkt.check(isinstance(e, TimeoutError) and "no reply" in str(e), "Timeout: %s" % e)
dead.close()

graph.send_signal(signal.SIGTERM)
try:
    _, err = graph.communicate(timeout=30)
except Exception:
    err = b""
inkt.check(graph.returncode == 0, "service exits 0 on SIGTERM")
row = inkt.summary_row(err.decode(), "tuner")
inkt.check(row is not None and row["rejected"] == 2, "2 refused requests counted: %s" % row)

# streams: send() with the end-of-stream exchange, recv() until the graph's own marker
e_in, e_out = inkt.endpoint(), inkt.endpoint()
scfg = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "%s", stop_after_eos: 1}
operators:
  pass: {type: passthrough, inputs: [feed]}
sinks:
  out: {type: zmq, socket: push, bind: "%s", inputs: [pass]}
""" % (e_in, e_out), "stream.yaml")
g2 = inkt.start([inkt.INKFLOW, "run", scfg])
inkt.check(inkt.wait_for(lambda: inkt.listening(e_in) and inkt.listening(e_out), timeout=20),
           "stream graph listening")
N = 2000
got = []
rt = threading.Thread(target=lambda: got.extend(inkflow.recv(e_out, timeout=30)))
rt.start()
n_ack = inkflow.send(e_in, ({"x": [i, 2.0 * i], "y": i * 0.5, "key": "k%d" % (i % 3)}
                            for i in range(N)), timeout=30)
rt.join(timeout=60)
inkt.check(n_ack == N, "send: the graph acknowledges %d of %d records" % (n_ack, N))
inkt.check(len(got) == N and [g["y"] for g in got] == [i * 0.5 for i in range(N)]
           and got[7]["x"] == [7.0, 14.0] and got[7]["key"] == "k1",
           "recv: %d records back in order, ended by the graph's end-of-stream marker" % len(got))
try:
    g2.wait(timeout=30)
except Exception:
    pass
inkt.check(g2.returncode == 0, "stream graph ends after the sender's end of stream (exit %s)"
           % g2.returncode)
inkt.finish()

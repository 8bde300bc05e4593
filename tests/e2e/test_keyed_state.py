"""Keyed state (key_by: key, max_keys, on_new_key) through the real binary and
a real zmq socket, one KLL sketch (ecdf, mode kll) per key:
- 10,000 keys within max_keys = 10,000: every record processed, 10,000 key
  states, nothing evicted or rejected;
- evict: 20,000 further new keys evict exactly 20,000 least recently used
  keys; a key evicted and seen again starts from a fresh state (n = 0), a key
  kept continues (n = 1);
- reject: 10,000 further new keys are each refused (reason keys_full) and
  counted, existing keys keep working;
- memory flat: resident memory after the key churn stays within 2 MiB of
  what it was at 10,000 keys."""
import os
import sys

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402
from inkprom import scrape, value  # noqa: E402

KEYS = 10000


def graph(policy):
    d = inkt.tmpdir()
    port, e_in = inkt.free_port(), inkt.endpoint()
    cfg = inkt.write_config(d, """
engine:
  http: {listen: "127.0.0.1:%d"}
sources:
  feed: {type: zmq, socket: pull, bind: "%s"}
operators:
  cdf:
    type: ecdf
    inputs: [feed]
    mode: kll
    k: 64
    key_by: key
    max_keys: %d
    on_new_key: %s
sinks:
  out: {type: file, path: out.msgpack, inputs: [cdf]}
""" % (port, e_in, KEYS, policy))
    g = inkt.start([inkt.INKFLOW, "run", cfg])
    inkt.wait_for(lambda: scrape(port) is not None, timeout=20)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.connect(e_in)
    return d, port, g, ctx, push


sent = 0


def send(push, port, keys):
    global sent
    for k in keys:
        push.send(msgpack.packb({"x": [float(k % 1000)], "key": "k%d" % k, "i": k}))
    sent += len(keys)
    ok = inkt.wait_for(lambda: value(scrape(port) or {}, "inkflow_records_in",
                                     "inkflow_records_in_total", node="feed") == sent,
                       timeout=60)
    return ok and scrape(port)


def m(fams, fam, **labels):
    sample = fam if fam.startswith("inkflow_operator") else fam + "_total"
    return value(fams, fam, sample, **labels)


def stop(d, g, ctx, push):
    push.close(0)
    ctx.term()
    g.terminate()
    _, err = g.communicate(timeout=30)
    recs = []
    with open(os.path.join(d, "out.msgpack"), "rb") as f:
        recs = list(msgpack.Unpacker(f, raw=False))
    return g.returncode, err.decode(), recs


# --- evict -----------------------------------------------------------------------------
sent = 0
d, port, g, ctx, push = graph("evict")
f = send(push, port, list(range(KEYS)) * 2)
inkt.check(f and m(f, "inkflow_operator_keys", node="cdf") == KEYS and
           m(f, "inkflow_keys_evicted", node="cdf") == 0 and
           m(f, "inkflow_records_out", node="cdf") == 2 * KEYS,
           "evict: %d keys within the cap: all %d records out, none evicted" % (KEYS, 2 * KEYS))
rss1 = inkt.rss_kib(g.pid)
f = send(push, port, list(range(KEYS, 2 * KEYS)))
rss2 = inkt.rss_kib(g.pid)
f = send(push, port, list(range(2 * KEYS, 3 * KEYS)))
rss3 = inkt.rss_kib(g.pid)
inkt.check(f and m(f, "inkflow_keys_evicted", node="cdf") == 2 * KEYS and
           m(f, "inkflow_operator_keys", node="cdf") == KEYS and
           m(f, "inkflow_records_out", node="cdf") == 4 * KEYS,
           "evict: 20,000 new keys evicted exactly 20,000 (keys stay %d)" % KEYS)
inkt.check(max(rss2, rss3) - rss1 < 2048,
           "evict: memory flat: RSS %d -> %d -> %d KiB" % (rss1, rss2, rss3))
send(push, port, [0, 3 * KEYS - 1])  # k0 was evicted long ago; the last key is held
rc, err, recs = stop(d, g, ctx, push)
inkt.check(rc == 0 and "keys_evicted=20001" in err,
           "evict: exit 0, summary says keys_evicted=20001 (k0 coming back evicted one more)")
tail = {r["key"]: r for r in recs[-2:]}
inkt.check(tail.get("k0", {}).get("n") == 0 and tail.get("k%d" % (3 * KEYS - 1), {}).get("n") == 1,
           "evict: a returning evicted key starts fresh (n=%s), a held key continues (n=%s)" %
           (tail.get("k0", {}).get("n"), tail.get("k%d" % (3 * KEYS - 1), {}).get("n")))

# --- reject ----------------------------------------------------------------------------
sent = 0
d, port, g, ctx, push = graph("reject")
f = send(push, port, list(range(KEYS)))
rss1 = inkt.rss_kib(g.pid)
f = send(push, port, list(range(KEYS, 2 * KEYS)))
rss2 = inkt.rss_kib(g.pid)
inkt.check(f and m(f, "inkflow_records_rejected", node="cdf", reason="keys_full") == KEYS and
           m(f, "inkflow_records_out", node="cdf") == KEYS and
           m(f, "inkflow_operator_keys", node="cdf") == KEYS and
           m(f, "inkflow_keys_evicted", node="cdf") == 0,
           "reject: 10,000 new keys refused (keys_full), counted; %d keys kept" % KEYS)
inkt.check(rss2 - rss1 < 2048, "reject: memory flat: RSS %d -> %d KiB" % (rss1, rss2))
f = send(push, port, [5])
inkt.check(f and m(f, "inkflow_records_out", node="cdf") == KEYS + 1, "reject: existing keys "
           "still processed")
rc, err, recs = stop(d, g, ctx, push)
inkt.check(rc == 0 and recs[-1]["key"] == "k5" and recs[-1]["n"] == 1,
           "reject: k5 continued from its state (n=%s)" % recs[-1].get("n"))
inkt.finish()

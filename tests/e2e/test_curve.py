"""CURVE and ZAP end to end (docs/security.md): the real binary, real tcp
sockets on 127.0.0.1, keys from `inkflow keygen`.

A graph's source is a CURVE server admitting one client key (an
authorized_keys directory); its output goes to a file and to a CURVE push
sink that `inkflow recv` reads with the client key. Then four senders:
the authorised one, one with an unknown key, one without CURVE and one
with the wrong server key. Only the authorised records may reach the
operator; each refusal is counted and logged with the peer's address."""
import os
import re
import signal
import stat
import sys

sys.path.insert(0, os.path.dirname(__file__))
import inkt  # noqa: E402

B = inkt.INKFLOW
d = inkt.tmpdir()
os.chdir(d)
for name in ("server", "client", "stranger"):
    r = inkt.run([B, "keygen", name])
    inkt.check(r.returncode == 0, "keygen %s: %s" % (name, r.stderr.decode().strip()))
mode = stat.S_IMODE(os.stat("client_secret").st_mode)
inkt.check(mode == 0o600, "secret key file mode 0600 (%o)" % mode)
r = inkt.run([B, "keygen", "client"])
inkt.check(r.returncode == 1, "keygen never overwrites a key")


def public(name):
    return [ln.strip() for ln in open(name) if ln.strip() and not ln.startswith("#")][0]


os.mkdir("allowed")
with open("allowed/client.key", "w") as f:  # the client's key as a zcert public file
    f.write('#   ZeroMQ CURVE Public Certificate\nmetadata\n    name = "client"\ncurve\n'
            '    public-key = "%s"\n' % public("client"))
with open("allowed/client", "w") as f:
    f.write(open("client").read())
os.symlink(os.path.abspath("client_secret"), "allowed/client_secret")  # skipped: _secret

e_in, e_out, e_ask = inkt.endpoint(), inkt.endpoint(), inkt.endpoint()
cfg = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "%s",
         curve: {secret_key_file: server_secret, authorized_keys: allowed}}
  ask: {type: zmq, socket: router, bind: "%s", reply_from: echo,
        curve: {secret_key_file: server_secret, authorized_keys: allowed/client.key}}
operators:
  pass: {type: passthrough, inputs: [feed]}
  echo: {type: passthrough, inputs: [ask]}
sinks:
  out: {type: file, path: out.jsonl, inputs: [pass]}
  net: {type: zmq, socket: push, bind: "%s", eos: false, inputs: [pass],
        curve: {secret_key_file: server_secret, public_key_file: server,
                authorized_keys: allowed/client}}
""" % (e_in, e_ask, e_out))
r = inkt.run([B, "validate", cfg])
inkt.check(r.returncode == 0, "the CURVE config validates: %s" % r.stderr.decode().strip())

graph = inkt.start([B, "run", cfg], stderr=open("graph.err", "wb"))


def log():
    with open("graph.err", "rb") as f:
        return f.read().decode()


up = inkt.wait_for(lambda: graph.poll() is not None or
                   all(inkt.listening(e) for e in (e_in, e_out, e_ask)), timeout=30)
inkt.check(up and graph.poll() is None, "graph with CURVE endpoints started")
if graph.poll() is not None:
    print(log())
    inkt.finish()
recv = inkt.start([B, "recv", e_out, "--count", "4", "--timeout", "20",
                   "--server-key", "server", "--secret-key", "client_secret"])

with open("good.jsonl", "w") as f:
    for i in range(3):
        f.write('{"x": [%d], "key": "good"}\n' % i)
with open("evil.jsonl", "w") as f:
    f.write('{"x": [666], "key": "evil"}\n')

good = inkt.run([B, "send", e_in, "good.jsonl", "--server-key", "server",
                 "--secret-key", "client_secret"])
inkt.check(good.returncode == 0, "authorised client gets through, end of stream acknowledged")
# the same client key as a zcert file (both keys, quoted, in a [curve] section)
sec = [l.strip() for l in open("client_secret") if l.strip() and not l.startswith("#")][0]
with open("client.zcert_secret", "w") as f:
    f.write('#   ZeroMQ CURVE **Secret** Certificate\ncurve\n    public-key = "%s"\n'
            '    secret-key = "%s"\n' % (public("client"), sec))
os.chmod("client.zcert_secret", 0o600)
with open("good2.jsonl", "w") as f:
    f.write('{"x": [3], "key": "good"}\n')
good = inkt.run([B, "send", e_in, "good2.jsonl", "--server-key", "server",
                 "--secret-key", "client.zcert_secret"])
inkt.check(good.returncode == 0, "a zcert secret key file works too: %s" % good.stderr.decode().strip())
senders = {
    "unknown key": ["--server-key", "server", "--secret-key", "stranger_secret"],
    "no CURVE": [],
    "wrong server key": ["--server-key", "stranger", "--secret-key", "client_secret"],
}
# Each refused sender's peer keeps reconnecting for the 1.5 s it waits, so
# its refusal is logged at least once past the rate limit (5 lines a second).
refused = {
    "unknown key": lambda: "refused CURVE client key %s from 127.0.0.1" % public("stranger")
    in log(),
    "no CURVE": lambda: NOCURVE.search(log()) is not None,
    "wrong server key": lambda: "CURVE decryption failed (the client has the wrong server key)"
    in log(),
}
# The peer's address is logged when libzmq gives it: a handshake broken off
# before the address is known is logged as coming from "an unknown address".
NOCURVE = re.compile(r"refused a connection from (127\.0\.0\.1:\d+|an unknown address): "
                     r"(security mechanism mismatch|handshake broken off)")
for what, opts in senders.items():
    r = inkt.run([B, "send", e_in, "evil.jsonl", "--eos-timeout", "1.5"] + opts)
    inkt.check(r.returncode == 1, "%s: refused (send exits 1, no acknowledgement)" % what)
    inkt.check(inkt.wait_for(refused[what], timeout=20), "%s: the refusal is logged" % what)

q = inkt.run([B, "query", e_ask, '{"x": [7]}', "--server-key", "server",
              "--secret-key", "client_secret"])
inkt.check(q.returncode == 0 and b"7" in q.stdout,
           "query with the client key answered: %s" % q.stdout.decode().strip())
q = inkt.run([B, "query", e_ask, '{"x": [8]}', "--timeout", "1"])
inkt.check(q.returncode == 1 and q.stdout.strip() == b"", "query without CURVE gets no answer")
out, _ = recv.communicate(timeout=20)
got = [l for l in out.decode().splitlines() if l.strip()]
inkt.check(recv.returncode == 0 and len(got) == 4 and all('"good"' in l for l in got),
           "recv with the client key reads the CURVE sink: %d records" % len(got))
bad = inkt.run([B, "recv", e_out, "--count", "1", "--timeout", "1",
                "--server-key", "server", "--secret-key", "stranger_secret"])
inkt.check(bad.stdout.strip() == b"", "recv with an unknown key gets nothing")

graph.send_signal(signal.SIGTERM)
graph.wait(timeout=15)
err = log()
print(err)
inkt.check(graph.returncode == 0, "graph exits 0")
rows = inkt.read_jsonl("out.jsonl")
inkt.check([r["x"][0] for r in rows] == [0, 1, 2, 3] and all(r["key"] == "good" for r in rows),
           "only the authorised records reached the operator: %s" % [r["x"] for r in rows])
row = inkt.summary_row(err, "feed")
inkt.check(row is not None and row["in"] == 4 and row["rejected"] == 0,
           "source counted 4 records, none from refused peers: %s" % row)
stranger = public("stranger")
inkt.check("refused CURVE client key %s from 127.0.0.1" % stranger in err,
           "unknown key logged with the key and the peer address")
# the server sees either the mismatch or the client hanging up on it first
nocurve = [l for l in err.splitlines() if NOCURVE.search(l)]
inkt.check(len(nocurve) >= 1, "client without CURVE refused and logged (with its address when "
           "libzmq gives it)")
other = [l for l in err.splitlines() if "refused a connection from" in l and not NOCURVE.search(l)
         and "CURVE" not in l]
inkt.check(not other, "every refusal names 127.0.0.1 or says the address is unknown: %s" % other)
inkt.check("CURVE decryption failed (the client has the wrong server key)" in err,
           "wrong server key logged")
conn = [l for l in err.splitlines() if l.startswith("inkflow: [feed] connections:")]
inkt.check(len(conn) == 1, "connection counters printed at exit: %s" % conn)
if conn:
    m = re.search(r"refused (\d+) \(auth (\d+), handshake (\d+)\)", conn[0])
    inkt.check(m and int(m.group(2)) >= 1 and int(m.group(3)) >= 2,
               "refusals counted: auth >= 1 (unknown key), handshake >= 2 (no CURVE, wrong key)")
net = [l for l in err.splitlines() if l.startswith("inkflow: [net] connections:")]
inkt.check(net and "auth 0" not in net[0], "the sink refused the unknown recv client: %s" % net)

# Safe defaults: a readable secret key is refused; a server without an
# allow-list does not validate; every-interface binds without CURVE warn.
os.chmod("server_secret", 0o644)
r = inkt.run([B, "run", cfg], timeout=20)
inkt.check(r.returncode != 0 and b"can be read by others" in r.stderr,
           "secret key readable by others is refused: %s" % r.stderr.decode().strip()[-120:])
os.chmod("server_secret", 0o600)
cfg2 = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "tcp://127.0.0.1:%d", curve: {secret_key_file: server_secret}}
sinks:
  out: {type: file, path: "-", inputs: [feed]}
""" % inkt.free_port(), "open.yaml")
r = inkt.run([B, "validate", cfg2])
inkt.check(r.returncode == 2 and b"authorized_keys" in r.stderr,
           "a CURVE server without authorized_keys is a config error")
cfg3 = inkt.write_config(d, """
sources:
  feed: {type: zmq, socket: pull, bind: "tcp://0.0.0.0:%d"}
sinks:
  out: {type: file, path: "-", inputs: [feed]}
""" % inkt.free_port(), "any.yaml")
with open("any.err", "wb") as f3:
    g3 = inkt.start([B, "run", cfg3], stderr=f3)
    warned = inkt.wait_for(lambda: b"every interface without CURVE" in open("any.err", "rb").read(),
                           timeout=20)
    g3.send_signal(signal.SIGTERM)
    g3.wait(timeout=10)
inkt.check(warned, "tcp://0.0.0.0 without CURVE warns")
inkt.finish()

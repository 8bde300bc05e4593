"""`fields:` on a kafka source (docs/fields.md, docs/kafka.md), on the mock cluster:
sensor JSON objects with named fields mapped into x, y, key and t by name; a record
missing a mapped field is rejected with a reason naming the field; a mapping that the
message key would silently override is refused by validate."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inkkafka  # noqa: E402
import inkt  # noqa: E402

mock = inkkafka.Mock({"sensors": 2})
d = inkt.tmpdir()
N = 200
readings = ['{"station": "s%d", "ts": "2026-12-05T10:%02d:%02dZ", "payload": {"temp": %d.5, '
            '"hum": %d}, "rain": %d}' % (i % 3, (i // 60) % 60, i % 60, i, 40 + i % 7, i % 2)
            for i in range(N)]
readings += ['{"station": "s9", "ts": "2026-12-05T10:00:00Z", "payload": {"hum": 1}, "rain": 0}',
             '{"station": "s9", "ts": "2026-12-05T10:00:00Z", "payload": {"temp": "warm"}, '
             '"rain": 0}']
mock.produce("sensors", lines=readings)

cfg = inkt.write_config(d, """
sources:
  feed:
    type: kafka
    brokers: "%s"
    topic: sensors
    group: gf
    format: json
    key: payload
    fields: {x: [payload.temp, payload.hum], y: rain, key: station,
             t: {field: ts, format: rfc3339}}
    dead_letter: dead
    options: {session.timeout.ms: 3000, heartbeat.interval.ms: 500}
sinks:
  out: {type: file, path: out.jsonl, inputs: [feed]}
  dead: {type: file, path: dead.jsonl}
""" % mock.bootstrap)
r = inkt.run([inkt.INKFLOW, "validate", cfg])
inkt.check(r.returncode == 0, "the mapping validates: %s" % r.stderr.decode().strip())


def lines(name):
    try:
        with open(os.path.join(d, name)) as f:
            return sum(1 for l in f if l.endswith("\n"))
    except FileNotFoundError:
        return 0


g = inkt.start([inkt.INKFLOW, "run", cfg])
inkt.check(inkt.wait_for(lambda: lines("out.jsonl") >= N and lines("dead.jsonl") >= 2,
                         timeout=60), "every reading came through or was dead-lettered")
g.send_signal(signal.SIGTERM)
_, err = g.communicate(timeout=30)
err = err.decode()
rows = inkt.read_jsonl(os.path.join(d, "out.jsonl"))
by_temp = {r["x"][0]: r for r in rows}
ok = len(rows) == N and all(
    by_temp.get(i + 0.5, {}).get("x") == [i + 0.5, 40 + i % 7] and
    by_temp[i + 0.5].get("y") == i % 2 and by_temp[i + 0.5].get("key") == "s%d" % (i % 3)
    for i in range(N))
inkt.check(ok, "x from payload.temp and payload.hum, y from rain, key from station (%d rows)"
           % len(rows))
t0 = 1796464800 * 10**9  # 2026-12-05T10:00:00Z
inkt.check(all(by_temp[i + 0.5].get("t") == t0 + (((i // 60) % 60) * 60 + i % 60) * 10**9
               for i in range(N)), "t from ts (RFC 3339), in nanoseconds")
dead = inkt.read_jsonl(os.path.join(d, "dead.jsonl"))
reasons = " | ".join(str(x.get("_error", "")) for x in dead)
inkt.check(len(dead) == 2 and "payload.temp" in reasons,
           "a missing or non-numeric mapped field is rejected, naming the field: %s" % reasons)
row = inkt.summary_row(err, "feed")
inkt.check(row is not None and row["rejected"] == 2, "summary: 2 rejected (%s)" % row)

bad = inkt.write_config(d, """
sources:
  feed: {type: kafka, brokers: "%s", topic: sensors, group: gb, format: json,
         fields: {x: [payload.temp], key: station}}
sinks:
  out: {type: file, path: x.jsonl, inputs: [feed]}
""" % mock.bootstrap, "bad.yaml")
r = inkt.run([inkt.INKFLOW, "validate", bad])
inkt.check(r.returncode == 2 and b"key: payload" in r.stderr,
           "a key mapped by fields: with key: message is refused: %s" % r.stderr.decode().strip())
mock.stop()
inkt.finish()

"""Kafka for the end-to-end tests, without a broker: tests/kafka_mock.c (librdkafka's
mock cluster on 127.0.0.1 ports it picks itself) started and stopped by pid, and its
produce / consume / committed / commit subcommands."""
import os
import re
import signal
import subprocess

import msgpack

import inkprom
import inkt

TOOL = os.path.join(inkt.BUILD, "tests", "kafka_mock")


class Mock:
    """One mock cluster (one broker). topics: {"name": partitions}."""

    def __init__(self, topics):
        args = [TOOL, "serve"] + ["%s:%d" % (t, n) for t, n in topics.items()]
        self.p = inkt.start(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
        self.bootstrap = self.p.stdout.readline().decode().strip()
        if not self.bootstrap:
            raise RuntimeError("kafka_mock serve did not start")

    def command(self, line):
        """down | up | topic_error TOPIC CODE; returns the tool's answer."""
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()
        return self.p.stdout.readline().decode().strip()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def produce(self, topic, records=None, lines=None, partition=None):
        """records: dicts sent as msgpack maps keyed by their "key"; lines: raw payloads
        (bytes or str), one message each, without key. Returns the count produced."""
        args = [TOOL, "produce", self.bootstrap, topic]
        if lines is not None:
            args.append("--lines")
            data = b"".join((l.encode() if isinstance(l, str) else l) + b"\n" for l in lines)
        else:
            data = b"".join(msgpack.packb(r) for r in records)
        if partition is not None:
            args += ["--partition", str(partition)]
        r = inkt.run(args, input=data, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("produce failed: " + r.stderr.decode())
        return int(r.stdout.decode().strip())

    def consume(self, topic, timeout=60):
        """Every message now on the topic: [(partition, offset, key bytes or None, value,
        timestamp ms)]."""
        r = inkt.run([TOOL, "consume", self.bootstrap, topic, str(timeout)], timeout=timeout + 30)
        if r.returncode != 0:
            raise RuntimeError("consume failed: " + r.stderr.decode()[-2000:])
        out = []
        for line in r.stdout.decode().splitlines():
            p, o, ts, k, v = line.split(" ")
            key = None if k == "-" else (b"" if k == "=" else bytes.fromhex(k))
            out.append((int(p), int(o), key, b"" if v == "=" else bytes.fromhex(v), int(ts)))
        return out

    def count(self, topic):
        """Messages ever written to the topic (sum of its high-water marks)."""
        r = inkt.run([TOOL, "count", self.bootstrap, topic], timeout=60)
        if r.returncode != 0:
            raise RuntimeError("count failed: " + r.stderr.decode())
        return int(r.stdout.decode().strip())

    def committed(self, group, topic):
        """{partition: committed offset} (negative: none)."""
        r = inkt.run([TOOL, "committed", self.bootstrap, group, topic], timeout=60)
        if r.returncode != 0:
            raise RuntimeError("committed failed: " + r.stderr.decode())
        return {int(a): int(b) for a, b in (l.split() for l in r.stdout.decode().splitlines())}

    def commit(self, group, topic, offsets):
        args = [TOOL, "commit", self.bootstrap, group, topic]
        args += ["%d:%d" % (p, o) for p, o in sorted(offsets.items())]
        r = inkt.run(args, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("commit failed: " + r.stderr.decode())


class Proc:
    """An inkflow process whose stderr is read as it comes (its http port from the
    log of `http: {listen: "127.0.0.1:0"}`, its log), and its /metrics."""

    def __init__(self, cfg):
        self.p = inkt.start([inkt.INKFLOW, "run", cfg], stdout=open(os.devnull, "w"))
        os.set_blocking(self.p.stderr.fileno(), False)
        self.log, self.port = "", None
        inkt.wait_for(lambda: self.read() and self.port is not None, 30)

    def read(self):
        try:
            b = self.p.stderr.read()
        except (ValueError, OSError):
            b = None
        if b:
            self.log += b.decode(errors="replace")
        m = self.port is None and re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log)
        if m:
            self.port = int(m.group(1))
        return True

    def metric(self, fam, sample=None, node="feed"):
        """A sample of node's; a counter may be named by its sample (..._total)."""
        if sample is None:
            sample, fam = fam, fam[:-6] if fam.endswith("_total") else fam
        fams = inkprom.scrape(self.port) if self.port else None
        return inkprom.value(fams, fam, sample, node=node) if fams else None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(60)
        except Exception:
            self.p.kill()
            self.p.wait()
        os.set_blocking(self.p.stderr.fileno(), True)
        self.log += self.p.stderr.read().decode(errors="replace")
        return self.p.returncode

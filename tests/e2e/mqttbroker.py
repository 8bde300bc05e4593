"""A real mosquitto broker for the end-to-end tests: 127.0.0.1, a free port,
its config, persistence file and log in a temp dir, stopped by its pid.

Run as root, mosquitto switches to the user named by `user` in its config
(default `mosquitto`) right after binding, so the directory must be that
user's: the helper gives it to `mosquitto` (or `nobody` when that user does
not exist) and names the user in the config. Run as anyone else, mosquitto
keeps the caller's identity and `user` has no effect.

Persistence is on and `max_queued_messages` is 0 (no limit): a restarted
broker restores the persistent sessions (clean_session false) with what was
queued for them, which is what the restart tests check."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

import inkt

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    def __init__(self, port=None, extra_conf=""):
        self.dir = inkt.tmpdir()
        self.port = port or inkt.free_port()
        self.proc = None
        self.user = None
        if os.geteuid() == 0:
            for name in ("mosquitto", "nobody"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    continue
                self.user = name
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
                break
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\n" % self.port)
            f.write("allow_anonymous true\n")
            f.write("persistence true\n")
            f.write("persistence_location %s/\n" % self.dir)
            f.write("autosave_interval 0\n")  # saved at shutdown
            f.write("max_queued_messages 0\n")
            f.write("max_inflight_messages 100\n")
            f.write("log_dest file %s/mosquitto.log\n" % self.dir)
            f.write("log_type error\nlog_type warning\nlog_type notice\n")
            if self.user:
                f.write("user %s\n" % self.user)
            f.write(extra_conf)
        self.url = "127.0.0.1:%d" % self.port

    def start(self, timeout=20):
        self.proc = inkt.start([MOSQUITTO, "-c", self.conf], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited with %s: %s" % (self.proc.returncode, self.log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen on %d: %s" % (self.port, self.log()))

    def stop(self, timeout=20):
        """SIGTERM by pid: mosquitto writes its persistence file and exits."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        self.proc = None

    def log(self):
        try:
            with open(os.path.join(self.dir, "mosquitto.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""


def publish(port, msgs, qos=1, client_id="inkflow-test-pub", timeout=120):
    """Publish [(topic, payload bytes)] in order with paho (python3-paho-mqtt) and
    wait until the broker acknowledged every one (QoS 1) or took it (QoS 0)."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(client_id=client_id, clean_session=True)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=qos) for t, p in msgs]
        deadline = time.time() + timeout
        for i in infos:
            i.wait_for_publish(max(0.1, deadline - time.time()))
            if not i.is_published():
                raise RuntimeError("publish not acknowledged within %d s" % timeout)
    finally:
        c.disconnect()
        c.loop_stop()


class Subscriber:
    """Collects (topic, payload) of every message on `topic` (QoS 1) in a
    paho thread; `got` is appended to as they arrive."""

    def __init__(self, port, topic, client_id="inkflow-test-sub"):
        import paho.mqtt.client as mqtt

        self.got = []
        self.ready = False
        self.c = mqtt.Client(client_id=client_id, clean_session=True)

        def on_connect(c, u, f, rc):
            c.subscribe(topic, qos=1)

        def on_subscribe(c, u, mid, q):
            self.ready = True

        self.c.on_connect = on_connect
        self.c.on_subscribe = on_subscribe
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not inkt.wait_for(lambda: self.ready, 20):
            raise RuntimeError("subscriber: no SUBACK")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()

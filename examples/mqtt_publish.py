#!/usr/bin/env python3
"""Replay the sensor data in data/ to an MQTT broker, as sensors would send it
(configs/sensors-mqtt.yaml reads it back):

  data/sensors-2010.csv             -> sensors/<key>/temp     {"temp": 47.8, "ts": "2010-01-01T00:00:00Z"}
  data/seattle-weather-2012-2015.csv -> weather/seattle/daily  {"temp": 5.0, "wind": 4.7, "precip": 0.0, "ts": ...}

  python3 examples/mqtt_publish.py --broker 127.0.0.1:1883 [--qos 1] [--rate 0]

Needs python3-paho-mqtt (Debian). Every message is acknowledged by the broker
(QoS 1) before the script exits; --rate limits messages per second (0 = as
fast as the broker takes them)."""
import argparse
import csv
import datetime
import json
import os
import sys
import time

import paho.mqtt.client as mqtt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def iso(ns):
    return datetime.datetime.fromtimestamp(int(ns) // 10**9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def messages():
    with open(os.path.join(ROOT, "data", "sensors-2010.csv")) as f:
        for r in csv.DictReader(f):
            yield "sensors/%s/temp" % r["key"], {"temp": float(r["temp"]), "ts": iso(r["t"])}
    with open(os.path.join(ROOT, "data", "seattle-weather-2012-2015.csv")) as f:
        for r in csv.DictReader(f):
            yield "weather/seattle/daily", {"temp": float(r["temp_min"]), "wind": float(r["wind"]),
                                            "precip": float(r["precipitation"]), "ts": iso(r["t"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1))
    ap.add_argument("--rate", type=float, default=0, help="messages per second, 0 = no limit")
    a = ap.parse_args()
    host, _, port = a.broker.rpartition(":")
    c = mqtt.Client(client_id="inkflow-example-publisher", clean_session=True)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect(host or "127.0.0.1", int(port))
    c.loop_start()
    t0 = time.time()
    infos = []
    for i, (topic, payload) in enumerate(messages()):
        if a.rate > 0:
            due = t0 + i / a.rate
            if due > time.time():
                time.sleep(due - time.time())
        infos.append(c.publish(topic, json.dumps(payload), qos=a.qos))
    for info in infos:
        info.wait_for_publish()
    c.disconnect()
    c.loop_stop()
    print("published %d messages in %.1f s" % (len(infos), time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()

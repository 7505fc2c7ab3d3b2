"""MQTT devices written with Debian's python3-paho-mqtt (1.6), for the ingress tests.

device HOST PORT NAME TIMEOUT_S PAYLOAD...: subscribes at QoS 1 to infergate/results/+/NAME, then
  publishes each PAYLOAD at QoS 1 to infergate/requests/demo/NAME and waits for as many answers as
  payloads; prints "acked N" once every publish got its PUBACK and each answer as "TOPIC<TAB>PAYLOAD".
  Exits 1 if the answers do not all arrive within TIMEOUT_S.
observer HOST PORT COUNT TIMEOUT_S: subscribes at QoS 1 to infergate/results/#, prints "subscribed",
  then each of COUNT answers as "TOPIC<TAB>PAYLOAD". Exits 1 if they do not all arrive in time.
"""
import sys
import threading
import time

import paho.mqtt.client as mqtt


def collect(c, want, timeout, on_subscribed):
    lock = threading.Condition()
    got = []

    def on_connect(client, userdata, flags, rc):
        if rc != 0:
            print("connect refused", rc, flush=True)

    def on_subscribe(client, userdata, mid, granted):
        on_subscribed(client, granted)

    def on_message(client, userdata, msg):
        with lock:
            got.append("%s\t%s" % (msg.topic, msg.payload.decode()))
            lock.notify_all()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    return lock, got


def device(host, port, name, timeout, payloads):
    c = mqtt.Client(client_id=name, clean_session=True)
    acked = []

    def publish_all(client, granted):
        infos = [client.publish("infergate/requests/demo/" + name, p, qos=1) for p in payloads]
        threading.Thread(target=lambda: wait_acks(infos), daemon=True).start()

    def wait_acks(infos):
        for i in infos:
            i.wait_for_publish()
        acked.append(True)
        print("acked", len(infos), flush=True)

    lock, got = collect(c, len(payloads), timeout, publish_all)
    c.connect(host, port, keepalive=10)
    c.subscribe("infergate/results/+/" + name, qos=1)
    c.loop_start()
    finish(c, lock, got, len(payloads), timeout)


def observer(host, port, count, timeout):
    c = mqtt.Client(client_id="observer", clean_session=True)
    def subscribed(client, granted):
        # 128 is MQTT's SUBACK failure: say so at once rather than time out.
        print("refused" if 128 in granted else "subscribed", flush=True)

    lock, got = collect(c, count, timeout, subscribed)
    c.connect(host, port, keepalive=10)
    c.subscribe("infergate/results/#", qos=1)
    c.loop_start()
    finish(c, lock, got, count, timeout)


def finish(c, lock, got, want, timeout):
    end = time.time() + timeout
    with lock:
        while len(got) < want and time.time() < end:
            lock.wait(0.1)
        lines = list(got)
    c.loop_stop()
    c.disconnect()
    for l in lines:
        print(l)
    sys.stdout.flush()
    sys.exit(0 if len(lines) >= want else 1)


if __name__ == "__main__":
    if sys.argv[1] == "device":
        device(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6:])
    else:
        observer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))

"""A device on MQTT with Debian's python3-paho-mqtt (1.6), for the ingress e2e tests.

pub HOST PORT DEVICE N RATE DEADLINE_S: publishes N QoS 1 requests for the demo model to
  infergate/requests/demo/DEVICE at about RATE per second, reconnecting when the server goes away,
  and prints the request_id of every publish that got a PUBACK, one a line, when all N are
  acknowledged or DEADLINE_S has passed.
sub HOST PORT DEVICE: subscribes with a persistent session (clean session off) at QoS 1 to
  infergate/results/+/DEVICE and prints the request_id of every answer as it arrives, until killed.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def pub(host, port, device, n, rate, deadline):
    acked_mids = set()
    lock = threading.Lock()
    c = mqtt.Client(client_id="pub-" + device, clean_session=True)
    c.max_inflight_messages_set(100)
    c.reconnect_delay_set(0.05, 0.5)

    def on_publish(client, userdata, mid):
        with lock:
            acked_mids.add(mid)

    c.on_publish = on_publish
    c.connect_async(host, port, keepalive=5)
    c.loop_start()
    mids = []
    features = [0.1, 0.2, 0.1, 0.3, 0.2, 0.1, 0.2, 0.1, 0.3, 0.2, 0.1, 0.2, 0.1, 0.3, 0.2, 0.1]
    for i in range(n):
        rid = "m-%s-%d" % (device, i)
        info = c.publish("infergate/requests/demo/" + device,
                         json.dumps({"request_id": rid, "features": features}), qos=1)
        mids.append((info.mid, rid))
        time.sleep(1.0 / rate)
    end = time.time() + deadline
    while time.time() < end:
        with lock:
            if all(m in acked_mids for m, _ in mids):
                break
        time.sleep(0.05)
    c.loop_stop()
    # A mid is reused after 65535 publishes; N stays below that.
    with lock:
        for mid, rid in mids:
            if mid in acked_mids:
                print(rid)
    sys.stdout.flush()


def sub(host, port, device):
    c = mqtt.Client(client_id="sub-" + device, clean_session=False)
    c.reconnect_delay_set(0.05, 0.5)

    def on_connect(client, userdata, flags, rc):
        if rc == 0:
            client.subscribe("infergate/results/+/" + device, qos=1)

    def on_subscribe(client, userdata, mid, granted):
        print("subscribed", flush=True)

    def on_message(client, userdata, msg):
        try:
            print(json.loads(msg.payload).get("request_id"), flush=True)
        except ValueError:
            print("bad-json", flush=True)

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect_async(host, port, keepalive=5)
    c.loop_forever(retry_first_connection=True)


if __name__ == "__main__":
    if sys.argv[1] == "pub":
        pub(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]))
    else:
        sub(sys.argv[2], int(sys.argv[3]), sys.argv[4])

"""Consume a topic with kafka-python (Debian's python3-kafka) in a consumer
group and print each record as one JSON line; used by realclients_test.go.

usage: kafka_python_consume.py BOOTSTRAP TOPIC GROUP COUNT
Exits 0 after COUNT records were read and their offsets committed, 2 on timeout.
"""
import json
import sys
import time

from kafka import KafkaConsumer


def main():
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    got = 0
    deadline = time.time() + 30
    while got < count and time.time() < deadline:
        for rec in consumer:
            print(json.dumps({
                "partition": rec.partition,
                "offset": rec.offset,
                "key": rec.key.decode() if rec.key is not None else None,
                "value": rec.value.decode(),
            }), flush=True)
            got += 1
            if got >= count:
                break
    if got < count:
        print("timed out after %d of %d records" % (got, count), file=sys.stderr)
        sys.exit(2)
    consumer.commit()
    consumer.close()


if __name__ == "__main__":
    main()

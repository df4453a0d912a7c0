#!/usr/bin/env python3
"""Camera images between two processes on one computer, over the ROS 2 middleware as
installed (Fast DDS by default): how many 640x480 rgb8 images (900 KiB each) published at
10 Hz arrive, for each pair of publisher / subscriber QoS (reliable, best effort), with and
without the package's Fast DDS profile (``config/fastdds_large_data.xml``) in the publisher's
and the subscriber's process.

    python benchmarks/image_transport.py [--count 60] [--rate 10]

Prints a markdown table and writes it to ``benchmarks/results/image_transport.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_data.xml"

PUBLISHER = """
import sys, time, rclpy
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("image_transport_publisher")
qos = qos_profile_sensor_data if sys.argv[1] == "best_effort" else QoSProfile(depth=10)
pub = node.create_publisher(Image, "image_transport_test", qos)
deadline = time.monotonic() + 10
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=bytes(640 * 480 * 3))
for i in range(int(sys.argv[2])):
    msg.header.frame_id = str(i)
    pub.publish(msg)
    time.sleep(1.0 / float(sys.argv[3]))
time.sleep(1.0)
"""

SUBSCRIBER = """
import sys, time, rclpy
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("image_transport_subscriber")
qos = qos_profile_sensor_data if sys.argv[1] == "best_effort" else QoSProfile(depth=10)
got = set()
node.create_subscription(Image, "image_transport_test", lambda m: got.add(m.header.frame_id), qos)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
print(len(got))
"""


def trial(pub_qos: str, sub_qos: str, pub_profile: bool, sub_profile: bool, count: int, rate: float,
          domain: int) -> int:
    def env(profile: bool) -> dict:
        e = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
            e.pop(k, None)
            if profile:
                e[k] = str(PROFILE)
        return e

    listen = count / rate + 14.0
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, sub_qos, str(listen)], env=env(sub_profile),
                           stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    subprocess.run([sys.executable, "-c", PUBLISHER, pub_qos, str(count), str(rate)], env=env(pub_profile),
                   check=True, timeout=listen + 30)
    out, _ = sub.communicate(timeout=listen + 30)
    return int(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    cases = [("reliable", "reliable", False, False), ("best_effort", "best_effort", False, False),
             ("reliable", "best_effort", False, False), ("best_effort", "best_effort", True, False),
             ("best_effort", "best_effort", False, True), ("best_effort", "best_effort", True, True),
             ("reliable", "reliable", True, True)]
    rows = ["| publisher QoS | subscriber QoS | profile in publisher | profile in subscriber | images received |",
            "|---|---|---|---|---:|"]
    for k, (pq, sq, pp, sp) in enumerate(cases):
        n = trial(pq, sq, pp, sp, args.count, args.rate, domain=60 + k)
        rows.append(f"| {pq} | {sq} | {'yes' if pp else 'no'} | {'yes' if sp else 'no'} | {n} of {args.count} |")
        print(rows[-1], flush=True)
    text = (f"640x480 rgb8 images at {args.rate:g} Hz between two processes ({os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)')}); "
            f"{platform.node()}, {os.cpu_count()} cores; `python benchmarks/image_transport.py`, "
            f"{time.strftime('%Y-%m-%d')}\n\n" + "\n".join(rows) + "\n")
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image_transport.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

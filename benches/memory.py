#!/usr/bin/env python3
"""Memory and startup figures for hookd (issue: reliability, memory and backlog).

Runs the release binary as a process, loads it with wrk over loopback and
reads /proc/PID/status. Measures, in one run:

  * startup-to-READY on an empty database (sd_notify on a socket we own),
  * RSS idle,
  * RSS peak while ingesting at full speed (16 connections),
  * RSS as an undelivered backlog grows to --events (default 1M) — the
    handler matches every event but is held busy, so the queue lives in
    SQLite and RSS must not grow with it,
  * after a restart on that database: startup-to-READY and RSS idle.

Usage (from the repository root):
    cargo build --release --locked
    python3 benches/memory.py [--events 1000000] [--pad 700] [--keep DIR]

Needs wrk (apt-get install wrk). Nothing here is a test: figures are printed.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "hookd")

WRK_LUA = r"""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  nonce = args[1] or "x"
  pad = string.rep("p", tonumber(args[2] or "0"))
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Bench-Token"] = "bench-token-0123456789"
end
function request()
  counter = counter + 1
  local body = '{"id":"' .. nonce .. '-' .. tid .. '-' .. counter ..
    '","type":"bench.event","pad":"' .. pad .. '"}'
  return wrk.format(nil, "/hooks/bench", nil, body)
end
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(d, port, admin):
    cfg = f"""
[daemon]
state_dir = "{d}/state"
shutdown_grace = "1s"

[server]
listen = ["127.0.0.1:{port}"]
max_body = "64KiB"

[admin]
listen = "127.0.0.1:{admin}"

[[source]]
name = "bench"
provider = "generic"
secret = "bench-token-0123456789"
signature = {{ scheme = "token", header = "X-Bench-Token" }}
extract = {{ id = ["json:/id"], type = ["json:/type"] }}

[[handler]]
name = "held"
events = ["*"]
command = ["sleep", "3600"]
timeout = "2h"
concurrency = 1
max_attempts = 1
"""
    path = os.path.join(d, "receiver.toml")
    with open(path, "w") as f:
        f.write(cfg)
    return path


class Daemon:
    """hookd as a child, ready when it says READY=1 on our notify socket."""

    def __init__(self, config, d):
        self.sock_path = os.path.join(d, f"notify-{time.monotonic_ns()}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path, RUST_LOG="warn")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [BIN, "-c", config, "run"], env=env, stderr=subprocess.DEVNULL
        )
        self.sock.settimeout(60)
        while True:
            msg = self.sock.recv(4096).decode()
            if "READY=1" in msg.split("\n"):
                break
        self.ready_ms = (time.perf_counter() - t0) * 1000

    def status(self, key):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # MiB
        return float("nan")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.sock.close()
        os.unlink(self.sock_path)


def accepted(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
    m = re.search(r"^hookd_accepted_total\{[^}]*\} (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def wrk(port, lua, seconds, nonce, pad, conns=16):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", lua,
         f"http://127.0.0.1:{port}/hooks/bench", "--", nonce, str(pad)],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return float(rps.group(1)) if rps else 0.0, int(non2xx.group(1)) if non2xx else 0


def sample_peak(daemon, stop, out):
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, daemon.status("VmRSS"))
        time.sleep(0.1)
    out.append(peak)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pad", type=int, default=700, help="payload padding bytes (1M x ~1 KiB ≈ 1 GB)")
    ap.add_argument("--keep", help="use this directory and keep it")
    args = ap.parse_args()
    if not os.access(BIN, os.X_OK):
        sys.exit("build first: cargo build --release --locked")

    d = args.keep or tempfile.mkdtemp(prefix="hookd-mem-")
    os.makedirs(d, exist_ok=True)
    lua = os.path.join(d, "bench.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    port, admin = free_port(), free_port()
    config = write_config(d, port, admin)

    rows = []
    dmn = Daemon(config, d)
    rows.append(("startup to READY, empty db", f"{dmn.ready_ms:.1f} ms"))
    time.sleep(2)
    idle = dmn.status("VmRSS")
    rows.append(("RSS idle, empty db", f"{idle:.1f} MiB"))

    stop, peaks = threading.Event(), []
    sampler = threading.Thread(target=sample_peak, args=(dmn, stop, peaks))
    sampler.start()
    rps, bad = wrk(port, lua, 15, "peak", args.pad)
    stop.set()
    sampler.join()
    rows.append(("ingest rate during peak (16 conns)", f"{rps:.0f} req/s, {bad} non-2xx"))
    rows.append(("RSS peak while ingesting (sampled)", f"{peaks[0]:.1f} MiB"))
    rows.append(("VmHWM after peak", f"{dmn.status('VmHWM'):.1f} MiB"))

    n, round_no = accepted(admin), 0
    while n < args.events:
        round_no += 1
        wrk(port, lua, 20, f"fill{round_no}", args.pad)
        n = accepted(admin)
        rows.append((f"RSS with backlog {n:,}", f"{dmn.status('VmRSS'):.1f} MiB"))
    dmn.stop()

    db = os.path.join(d, "state", "hookd.db")
    size = os.path.getsize(db) / 2**30
    dmn = Daemon(config, d)
    rows.append((f"startup to READY, {size:.2f} GiB db, {n:,} pending", f"{dmn.ready_ms:.1f} ms"))
    time.sleep(2)
    rows.append(("RSS idle with that backlog", f"{dmn.status('VmRSS'):.1f} MiB"))
    dmn.stop()

    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(f"(baseline: idle RSS {idle:.1f} MiB; peak/idle = {peaks[0] / idle:.2f}x)")
    if not args.keep:
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()

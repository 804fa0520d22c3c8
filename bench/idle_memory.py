#!/usr/bin/env python3
"""Idle memory per connection of a reactor-server, measured directly and at scale.

Starts `reactor-server --protocol echo --model MODEL --listen tcp://127.0.0.1:0`, opens
connections in steps (default 2,000 then up to 10,000 and 12,000), waits until the server holds
each step (its descriptor count), and reads /proc/PID/smaps_rollup (Pss, Rss, Private_Dirty)
at each. Prints bytes per connection from the empty server to each step, and the marginal
bytes per connection between the first and the last step (fixed costs and one-off table growth
then cancel out). Finally proves the connections alive: each echoes 16 bytes.

Private_Dirty is the steady figure: Pss and Rss also count the server's code, and the code an
accepted connection runs first (Connection, the slab, the session) is mapped in by the kernel's
64 KiB fault-around in some runs and not others: +64 KiB once, 64 B per connection at 1,000.

usage: idle_memory.py [--server PATH] [--model epoll] [--steps 2000,10000,12000] [--rounds 1]
                      [--trim]
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import time


def rollup(pid):
    text = open(f"/proc/{pid}/smaps_rollup").read()
    out = {}
    for key in ("Rss", "Pss", "Private_Dirty", "Anonymous"):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        out[key] = int(m.group(1)) * 1024 if m else 0
    return out


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    sys.exit(f"idle_memory: timed out waiting for {what}")


def one_round(args, steps):
    server = subprocess.Popen(
        [args.server, "--protocol", "echo", "--model", args.model, "--listen",
         "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        m = re.search(r":(\d+)\s*$", line)
        if not m:
            sys.exit(f"idle_memory: no port in {line!r}")
        port = int(m.group(1))
        time.sleep(0.2)  # let the server finish its start-up allocations
        base_fds = fd_count(server.pid)
        empty = rollup(server.pid)
        held = []
        samples = []
        for n in steps:
            while len(held) < n:
                s = socket.create_connection(("127.0.0.1", port))
                held.append(s)
            wait_for(lambda: fd_count(server.pid) >= base_fds + n, 30, f"{n} connections")
            time.sleep(0.3)
            if args.trim:  # what malloc keeps freed (old vector buffers) goes back first
                subprocess.run(["gdb", "-p", str(server.pid), "-batch", "-ex",
                                "call (int)malloc_trim(0)"], capture_output=True, check=True)
            samples.append((n, rollup(server.pid)))
        for s in held:
            s.sendall(b"0123456789abcdef")
        for s in held:
            got = b""
            while len(got) < 16:
                chunk = s.recv(16 - len(got))
                if not chunk:
                    sys.exit("idle_memory: a connection was closed while held")
                got += chunk
        for s in held:
            s.close()
        return empty, samples
    finally:
        server.terminate()
        server.wait(10)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("--server", default=os.path.join(here, "..", "build-rel", "tools",
                                                    "reactor-server"))
    p.add_argument("--model", default="epoll")
    p.add_argument("--steps", default="2000,10000,12000")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--trim", action="store_true",
                   help="call malloc_trim(0) in the server (through gdb) before each sample")
    args = p.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    for r in range(args.rounds):
        empty, samples = one_round(args, steps)
        print(f"round {r + 1}: empty server Pss {empty['Pss'] / 1024:.0f} KiB")
        for n, s in samples:
            row = "  ".join(f"{k} {(s[k] - empty[k]) / n:6.1f}" for k in ("Pss", "Rss",
                                                                        "Private_Dirty"))
            print(f"  {n:6d} idle: B/conn from empty: {row}")
        (n0, s0), (n1, s1) = samples[0], samples[-1]
        row = "  ".join(f"{k} {(s1[k] - s0[k]) / (n1 - n0):6.1f}" for k in ("Pss", "Rss",
                                                                          "Private_Dirty"))
        print(f"  marginal {n0}..{n1}: B/conn: {row}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""stray-poker.py MODE SECONDS: a stranger on this host's loopback. Every TCP
port that starts listening on 127.0.0.1 after it starts gets one connection
from it: MODE close hangs up at once, MODE silent keeps the connection open
and says nothing. It runs SECONDS, then exits; it prints how many ports it
poked."""
import socket
import sys
import time


def listening():
    ports = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and local.startswith("0100007F:"):
                ports.add(int(local.split(":")[1], 16))
    return ports


def main():
    mode, secs = sys.argv[1], float(sys.argv[2])
    seen = listening()
    kept = []
    poked = 0
    end = time.time() + secs
    while time.time() < end:
        for port in listening() - seen:
            seen.add(port)
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                continue
            poked += 1
            if mode == "close":
                s.close()
            else:
                kept.append(s)
        time.sleep(0.001)
    print(poked)


if __name__ == "__main__":
    main()

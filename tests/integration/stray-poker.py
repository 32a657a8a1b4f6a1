#!/usr/bin/env python3
"""stray-poker.py MODE SECONDS PID: a stranger on this host's loopback. Every
TCP port on 127.0.0.1 that process PID starts listening on after this starts
gets one connection from it (other processes' ports are left alone: tests
may run side by side): MODE close hangs up at once, MODE silent keeps the
connection open and says nothing. It runs SECONDS, then exits; it prints
how many ports it poked."""
import os
import socket
import sys
import time


def socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
    return inodes


def listening(pid):
    ports = set()
    mine = socket_inodes(pid)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local.startswith("0100007F:") and inode in mine:
                ports.add(int(local.split(":")[1], 16))
    return ports


def main():
    mode, secs, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    seen = listening(pid)
    kept = []
    poked = 0
    end = time.time() + secs
    while time.time() < end:
        for port in listening(pid) - seen:
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

#!/usr/bin/env python3
"""vmigctl.py - the host side of the migration test guest (used by guest.sh).

  vmigctl.py qmp SOCK JSON|COMMAND [TIMEOUT]
      One QMP command: greeting, qmp_capabilities, the command, its reply
      printed as one JSON line (events skipped). A bare word is taken as
      {"execute": WORD}. Exit 0 on "return", 1 on "error".
  vmigctl.py qmp-status SOCK [TIMEOUT]
      Prints query-status's status (running, inmigrate, paused, postmigrate...).
  vmigctl.py migrate-wait SOCK TIMEOUT [STATE,...]
      Polls query-migrate until its status is one of STATEs (default
      completed) or failed/cancelled; prints the status. Exit 0 when it is
      one of STATEs, 1 otherwise or on timeout.
  vmigctl.py serial SOCK COMMAND PATTERN TIMEOUT
      Connects to the guest's serial socket, sends COMMAND and a newline and
      prints the first whole line matching the regular expression PATTERN.
      Exit 1 on timeout (the lines seen go to stderr).
  vmigctl.py wait-log LOG PATTERN OFFSET TIMEOUT [PID]
      Waits until a whole line that starts at or after byte OFFSET of LOG
      matches PATTERN; prints it. Exit 1 on timeout, 3 when PID is gone.
  vmigctl.py corrupt MEMFILE N
      Finds the workload's pages in a guest RAM file (magic, plausible index,
      valid checksum), overwrites 64 content bytes of N of them, spread over
      the file, and prints "CORRUPTED <n> first=<lowest index> indices=<...>".
      Exit 1 when no workload page is found.
  vmigctl.py stale OLDFILE MEMFILE N
      Makes N of the workload's pages in MEMFILE stale: copies back, whole,
      the older version of the page that OLDFILE (an earlier RAM file of the
      same guest) holds, where the generations differ. Each such page is
      self-consistent; only the workload's generation table tells it is old.
      Prints "STALE <n> first=<lowest index> indices=<...>". Exit 1 when no
      page differs.

Exit 2: usage, or the socket could not be reached.
"""
import json
import mmap
import os
import re
import socket
import struct
import sys
import time

PAGE = 4096
MAGIC = 0x31474D56474D4956
MASK = (1 << 64) - 1


class Fail(Exception):
    pass


def connect(path, deadline):
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            s.settimeout(max(0.05, deadline - time.monotonic()))
            return s
        except OSError as e:
            s.close()
            if time.monotonic() > deadline:
                print(f"vmigctl: cannot connect to {path}: {e}", file=sys.stderr)
                sys.exit(2)
            time.sleep(0.02)


class QMP:
    def __init__(self, path, timeout):
        self.deadline = time.monotonic() + timeout
        self.s = connect(path, self.deadline)
        self.f = self.s.makefile("rw")
        self.read()  # greeting
        self.cmd({"execute": "qmp_capabilities"})

    def read(self):
        line = self.f.readline()
        if not line:
            raise Fail("QEMU closed the QMP connection")
        return json.loads(line)

    def cmd(self, obj):
        self.f.write(json.dumps(obj) + "\n")
        self.f.flush()
        while True:
            r = self.read()
            if "return" in r or "error" in r:
                return r


def parse_cmd(text):
    text = text.strip()
    if text.startswith("{"):
        return json.loads(text)
    return {"execute": text}


def cmd_qmp(sock, text, timeout="10"):
    r = QMP(sock, float(timeout)).cmd(parse_cmd(text))
    print(json.dumps(r))
    return 0 if "return" in r else 1


def cmd_qmp_status(sock, timeout="10"):
    r = QMP(sock, float(timeout)).cmd({"execute": "query-status"})
    if "error" in r:
        print(json.dumps(r), file=sys.stderr)
        return 1
    print(r["return"]["status"])
    return 0


def cmd_migrate_wait(sock, timeout, states="completed"):
    want = set(states.split(","))
    q = QMP(sock, float(timeout))
    status = "none"
    while True:
        r = q.cmd({"execute": "query-migrate"})
        status = r.get("return", {}).get("status", "none")
        if status in want or status in ("failed", "cancelled"):
            break
        if time.monotonic() > q.deadline:
            print(f"vmigctl: migration still '{status}' after {timeout}s", file=sys.stderr)
            print(status)
            return 1
        time.sleep(0.05)
    print(status)
    if status not in want:
        err = r.get("return", {}).get("error-desc")
        if err:
            print(f"vmigctl: migration {status}: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_serial(sock, command, pattern, timeout):
    deadline = time.monotonic() + float(timeout)
    rx = re.compile(pattern)
    s = connect(sock, deadline)
    s.sendall(command.encode() + b"\n")
    buf, seen = b"", []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        if not data:
            seen.append("(serial connection closed)")
            break
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode(errors="replace").strip("\r")
            if rx.search(line):
                print(line)
                return 0
            seen.append(line)
    print(f"vmigctl: no line matching /{pattern}/ after '{command}' within {timeout}s; last lines:",
          file=sys.stderr)
    for line in seen[-10:]:
        print(f"  {line}", file=sys.stderr)
    return 1


def cmd_wait_log(log, pattern, offset, timeout, pid=None):
    deadline = time.monotonic() + float(timeout)
    rx = re.compile(pattern)
    pos, partial = int(offset), b""
    while True:
        try:
            with open(log, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            data = b""
        if data:
            pos += len(data)
            partial += data
            while b"\n" in partial:
                raw, partial = partial.split(b"\n", 1)
                line = raw.decode(errors="replace").strip("\r")
                if rx.search(line):
                    print(line)
                    return 0
        if pid and not os.path.exists(f"/proc/{pid}"):
            print(f"vmigctl: process {pid} is gone (waiting for /{pattern}/ in {log})", file=sys.stderr)
            return 3
        if time.monotonic() > deadline:
            print(f"vmigctl: no line matching /{pattern}/ in {log} within {timeout}s", file=sys.stderr)
            return 1
        time.sleep(0.05)


def page_csum(index, gen, words):
    def mix64(z):
        z &= MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    h = mix64(index ^ 0x6A09E667F3BCC908) ^ mix64(gen + 0xBB67AE8584CAA73B)
    for w in words:
        h ^= w
        h = (h * 0x100000001B3) & MASK
        h ^= h >> 29
    return mix64(h)


def workload_pages(m, size):
    """(file offset, page index) of each page with the magic and an index in range"""
    found = []
    magic = struct.pack("<Q", MAGIC)
    off = m.find(magic)
    while off >= 0:
        if off % PAGE == 0:
            index = struct.unpack_from("<Q", m, off + 8)[0]
            if index < size // PAGE:
                found.append((off, index))
            off = m.find(magic, off + PAGE)
        else:
            off = m.find(magic, off + 1)
    return found


def page_valid(m, off, index):
    gen, csum = struct.unpack_from("<QQ", m, off + 16)
    return page_csum(index, gen, struct.unpack_from("<508Q", m, off + 32)) == csum


def spread(found, n):
    """found, reordered: n picks spread over it first, then the rest"""
    step = max(1, len(found) // max(1, n))
    return found[::step] + [p for i, p in enumerate(found) if i % step]


def cmd_stale(oldfile, memfile, n):
    n = int(n)
    chosen = []
    with open(oldfile, "rb") as fo, open(memfile, "r+b") as f:
        osize, size = os.fstat(fo.fileno()).st_size, os.fstat(f.fileno()).st_size
        om = mmap.mmap(fo.fileno(), osize, prot=mmap.PROT_READ)
        m = mmap.mmap(f.fileno(), size)
        try:
            old = {index: off for off, index in workload_pages(om, osize)}
            for off, index in spread(workload_pages(m, size), n):
                if len(chosen) == n:
                    break
                ooff = old.get(index)
                if ooff is None or om[ooff + 16:ooff + 24] == m[off + 16:off + 24]:
                    continue  # not in the old file, or the same generation
                if not page_valid(om, ooff, index) or not page_valid(m, off, index):
                    continue
                m[off:off + PAGE] = om[ooff:ooff + PAGE]
                chosen.append((off, index))
            m.flush()
        finally:
            m.close()
            om.close()
    if not chosen:
        print(f"vmigctl: no workload page of {memfile} has an older version in {oldfile}", file=sys.stderr)
        return 1
    idx = sorted(i for _, i in chosen)
    print(f"STALE {len(chosen)} first={idx[0]} indices={','.join(map(str, idx))}")
    return 0


def cmd_corrupt(memfile, n):
    n = int(n)
    chosen = []
    with open(memfile, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        m = mmap.mmap(f.fileno(), size)
        try:
            found = workload_pages(m, size)
            for off, index in spread(found, n):
                if len(chosen) == n:
                    break
                if not page_valid(m, off, index):
                    continue
                m[off + 1024:off + 1088] = bytes(b ^ 0x5A for b in m[off + 1024:off + 1088])
                chosen.append((off, index))
            m.flush()
        finally:
            m.close()
    if not chosen:
        print(f"vmigctl: no workload page in {memfile}", file=sys.stderr)
        return 1
    idx = sorted(i for _, i in chosen)
    print(f"CORRUPTED {len(chosen)} first={idx[0]} found={len(found)} indices={','.join(map(str, idx))}")
    return 0


def main(argv):
    cmds = {"qmp": (cmd_qmp, 2, 3), "qmp-status": (cmd_qmp_status, 1, 2),
            "migrate-wait": (cmd_migrate_wait, 2, 3), "serial": (cmd_serial, 4, 4),
            "wait-log": (cmd_wait_log, 4, 5), "corrupt": (cmd_corrupt, 2, 2),
            "stale": (cmd_stale, 3, 3)}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    fn, lo, hi = cmds[argv[1]]
    args = argv[2:]
    if not lo <= len(args) <= hi:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return fn(*args)
    except (Fail, OSError, ValueError) as e:
        print(f"vmigctl {argv[1]}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

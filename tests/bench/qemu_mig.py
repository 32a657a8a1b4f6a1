#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""qemu_mig.py QEMU SIZE IMAGE CHANNELS DEST QDST TMP [MODE [ADDR]]

One QEMU-to-QEMU migration of a paused guest (-S) whose RAM is IMAGE
(memory-backend-file, share=off, prealloc=on) to a second QEMU started
with -incoming defer, driven over QMP; prints its figures as one JSON line
(migrate_s: migrate command to the destination's completed; whole_s: from
starting the destination QEMU until both have quit). DEST: the destination
RAM, memfd, ram, or shm (a shared file QDST). MODE: multifd (CHANNELS
channels over TCP, the default), rdma (QEMU's rdma: migration), or
rdma-pin-all (with the rdma-pin-all capability); ADDR: the address both
QEMUs use (default 127.0.0.1). Used by vs-qemu.sh and vs-qemu-vm.sh.
"""
import ctypes, json, os, signal, socket, subprocess, sys, time

qemu, size, image, channels, dest, qdst, tmp = sys.argv[1:8]
mode = sys.argv[8] if len(sys.argv) > 8 else "multifd"
addr = sys.argv[9] if len(sys.argv) > 9 else "127.0.0.1"
if mode not in ("multifd", "rdma", "rdma-pin-all"):
    sys.exit(f"qemu_mig.py: MODE {mode}: multifd, rdma or rdma-pin-all")
libc = ctypes.CDLL(None, use_errno=True)
deadline = time.monotonic() + 600


def die_with_parent():
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no QEMU outlives this driver


class Fail(Exception):
    pass


class QMP:
    def __init__(self, path, proc, name):
        self.name, self.events = name, []
        while True:
            if proc.poll() is not None:
                raise Fail(f"{name} QEMU exited with {proc.returncode} before QMP came up")
            if time.monotonic() > deadline:
                raise Fail(f"{name} QEMU: no QMP socket")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                time.sleep(0.002)
        s.settimeout(max(1.0, deadline - time.monotonic()))
        self.f = s.makefile("rw")
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise Fail(f"{self.name} QEMU closed QMP")
        return json.loads(line)

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = self.read()
            if "event" in r:
                self.events.append(r)
            elif "error" in r:
                raise Fail(f"{self.name} QEMU: {name}: {r['error'].get('desc')}")
            else:
                return r.get("return")

    def wait_migration(self, states):
        while True:
            for e in self.events:
                if e["event"] == "MIGRATION" and e["data"]["status"] in states:
                    self.events.remove(e)
                    return e["data"]["status"]
            self.events.append(self.read())


def free_port():
    s = socket.socket()
    s.bind((addr, 0))
    p = s.getsockname()[1]
    s.close()
    return p


common = [qemu, "-machine", "none,memory-backend=m", "-accel", "tcg", "-nodefaults",
          "-display", "none", "-m", f"{int(size) >> 20}M"]
if dest == "memfd":
    dmem = f"memory-backend-memfd,id=m,size={size}"
elif dest == "ram":
    dmem = f"memory-backend-ram,id=m,size={size}"
else:
    dmem = f"memory-backend-file,id=m,size={size},mem-path={qdst},share=on"
procs = []
t0 = time.monotonic()
try:
    for name, extra in (("dst", ["-object", dmem, "-incoming", "defer"]),
                        ("src", ["-S", "-object", f"memory-backend-file,id=m,size={size},"
                                 f"mem-path={image},share=off,prealloc=on"])):
        log = open(f"{tmp}/qemu-{name}.log", "w")
        procs.append(subprocess.Popen(
            common + extra + ["-qmp", f"unix:{tmp}/{name}.sock,server=on,wait=off",
                              "-pidfile", f"{tmp}/qemu-{name}.pid"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=die_with_parent))
    dst = QMP(f"{tmp}/dst.sock", procs[0], "destination")
    src = QMP(f"{tmp}/src.sock", procs[1], "source")
    for q in (dst, src):
        caps = [{"capability": "events", "state": True}]
        if mode == "multifd":
            caps.append({"capability": "multifd", "state": True})
        if mode == "rdma-pin-all":
            caps.append({"capability": "rdma-pin-all", "state": True})
        q.cmd("migrate-set-capabilities", capabilities=caps)
        if mode == "multifd":
            q.cmd("migrate-set-parameters", **{"multifd-channels": int(channels)})
    src.cmd("migrate-set-parameters", **{"max-bandwidth": 100 << 30})
    uri = f"{'tcp' if mode == 'multifd' else 'rdma'}:{addr}:{free_port()}"
    dst.cmd("migrate-incoming", uri=uri)
    tm0 = time.monotonic()
    src.cmd("migrate", uri=uri)
    st = dst.wait_migration(("completed", "failed", "cancelled"))
    tm1 = time.monotonic()
    if st != "completed":
        raise Fail(f"destination QEMU: migration {st}")
    st = src.wait_migration(("completed", "failed", "cancelled"))
    if st != "completed":
        raise Fail(f"source QEMU: migration {st}")
    info = src.cmd("query-migrate")
    for q in (dst, src):
        q.cmd("quit")
    for p in procs:
        if p.wait(timeout=max(1.0, deadline - time.monotonic())):
            raise Fail(f"QEMU exited with {p.returncode} after quit")
    t1 = time.monotonic()
    ram = info.get("ram", {})
    print(json.dumps({"migrate_s": tm1 - tm0, "whole_s": t1 - t0,
                      "qemu_total_ms": info.get("total-time"),
                      "transferred": ram.get("transferred"), "normal": ram.get("normal"),
                      "zero_pages": ram.get("duplicate")}))
except Exception as e:  # noqa: BLE001 - any failure is reported the same way
    print(f"qemu migration failed: {e}", file=sys.stderr)
    for name in ("dst", "src"):
        try:
            log = open(f"{tmp}/qemu-{name}.log").read().strip()
            if log:
                print(f"{name} QEMU said: {log}", file=sys.stderr)
        except OSError:
            pass
    sys.exit(1)
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()

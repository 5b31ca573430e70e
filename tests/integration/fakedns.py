"""A tiny fake DNS server over UDP for resolver tests (stdlib only).

Answers A and AAAA queries from a table {name: (addresses, ttl)}; the same behaviour as the C++
helper tests/unit/support/fake_dns.h:

- names match case-insensitively, without the trailing dot;
- an unknown name gets NXDOMAIN; a known name with no address of the asked family gets NOERROR
  with no answer (NODATA), e.g. AAAA for a name with IPv4 addresses only;
- a name may be delayed (its answers are sent later; other names are answered meanwhile) or
  silenced (its queries are counted and dropped, like a server that stopped answering);
- queries are counted per (name, type).

API:
    FakeDns(ttl=60) -> started on 127.0.0.1:0; .port, .server ("127.0.0.1:PORT"), .stop();
    context manager.
    .set(name, addresses, ttl=None, delay_ms=0)   addresses: IPv4 and/or IPv6 strings
    .delay(name, ms)          delay the name's answers
    .silence(name, on=True)   drop the name's queries
    .remove(name)             NXDOMAIN from now on
    .queries(name, qtype="A") queries received so far ("A" or "AAAA")

Command line (for end-to-end tests and by hand):
    python3 fakedns.py --record api.test=10.0.0.1,10.0.0.2 --delay-ms slow.test=2000 --ttl 30
prints "fakedns listening on 127.0.0.1:PORT" on stdout and serves until killed.
"""

import argparse
import ipaddress
import socket
import struct
import sys
import threading

__all__ = ["FakeDns"]

TYPE_A = 1
TYPE_AAAA = 28
TYPE_NAMES = {"A": TYPE_A, "AAAA": TYPE_AAAA}
RCODE_NXDOMAIN = 3


def _normalise(name):
    return name.rstrip(".").lower()


class FakeDns:
    def __init__(self, ttl=60, host="127.0.0.1", port=0):
        self.default_ttl = ttl
        self._lock = threading.Lock()
        self._table = {}  # name -> {"v4": [...], "v6": [...], "ttl": s, "delay_ms": ms, "silent": bool}
        self._counts = {}  # (name, qtype) -> n
        self._timers = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.server = f"{host}:{self.port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fakedns", daemon=True)
        self._thread.start()

    # -- table -------------------------------------------------------------------------------
    def set(self, name, addresses, ttl=None, delay_ms=0):
        v4, v6 = [], []
        for text in addresses:
            ip = ipaddress.ip_address(text)
            (v4 if ip.version == 4 else v6).append(ip.packed)
        with self._lock:
            old = self._table.get(_normalise(name), {})
            self._table[_normalise(name)] = {
                "v4": v4, "v6": v6,
                "ttl": self.default_ttl if ttl is None else int(ttl),
                "delay_ms": delay_ms or old.get("delay_ms", 0),
                "silent": old.get("silent", False),
            }

    def delay(self, name, ms):
        with self._lock:
            self._entry(name)["delay_ms"] = int(ms)

    def silence(self, name, on=True):
        with self._lock:
            self._entry(name)["silent"] = bool(on)

    def remove(self, name):
        with self._lock:
            self._table.pop(_normalise(name), None)

    def queries(self, name, qtype="A"):
        with self._lock:
            return self._counts.get((_normalise(name), TYPE_NAMES[qtype]), 0)

    def _entry(self, name):
        return self._table.setdefault(_normalise(name), {
            "v4": [], "v6": [], "ttl": self.default_ttl, "delay_ms": 0, "silent": False})

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self):
        self._stopping.set()
        self._thread.join()
        with self._lock:
            for timer in self._timers:
                timer.cancel()
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- protocol ----------------------------------------------------------------------------
    def _serve(self):
        while not self._stopping.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            answer, delay_ms = self._answer(data)
            if answer is None:
                continue
            if delay_ms > 0:
                timer = threading.Timer(delay_ms / 1000.0, self._send, (answer, peer))
                timer.daemon = True
                with self._lock:
                    self._timers = [t for t in self._timers if t.is_alive()] + [timer]
                timer.start()
            else:
                self._send(answer, peer)

    def _send(self, packet, peer):
        try:
            self._sock.sendto(packet, peer)
        except OSError:
            pass  # stopped meanwhile

    def _answer(self, data):
        """The response to query `data` and its delay, or (None, 0) to send nothing."""
        if len(data) < 12 or data[2] & 0x80:
            return None, 0  # too short, or a response
        qdcount = struct.unpack("!H", data[4:6])[0]
        if qdcount != 1:
            return None, 0
        pos, labels = 12, []
        while pos < len(data) and data[pos] != 0:
            length = data[pos]
            if length > 63 or pos + 1 + length > len(data):
                return None, 0
            labels.append(data[pos + 1:pos + 1 + length].decode("ascii", "replace"))
            pos += 1 + length
        if pos + 5 > len(data):
            return None, 0
        qtype = struct.unpack("!H", data[pos + 1:pos + 3])[0]
        question = data[12:pos + 5]
        name = _normalise(".".join(labels))

        flags = 0x8000 | 0x0400 | (struct.unpack("!H", data[2:4])[0] & 0x7900) | 0x0080
        with self._lock:
            self._counts[(name, qtype)] = self._counts.get((name, qtype), 0) + 1
            entry = self._table.get(name)
            if entry is None:
                header = data[0:2] + struct.pack("!HHHHH", flags | RCODE_NXDOMAIN, 1, 0, 0, 0)
                return header + question, 0
            if entry["silent"]:
                return None, 0
            records = entry["v4"] if qtype == TYPE_A else entry["v6"] if qtype == TYPE_AAAA else []
            ttl, delay_ms = entry["ttl"], entry["delay_ms"]
        answers = b"".join(
            struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(raw)) + raw for raw in records)
        header = data[0:2] + struct.pack("!HHHHH", flags, 1, len(records), 0, 0)
        return header + question + answers, delay_ms


def _pairs(values, what):
    out = []
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise SystemExit(f"fakedns: {what} wants NAME=VALUE, got {value!r}")
        out.append((name, rest))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake DNS server (A/AAAA from a table) for tests.")
    parser.add_argument("--record", action="append", metavar="NAME=IP[,IP]",
                        help="addresses of NAME (IPv4 and/or IPv6); repeatable")
    parser.add_argument("--delay-ms", action="append", metavar="NAME=MS",
                        help="answer NAME's queries MS milliseconds late; repeatable")
    parser.add_argument("--ttl", type=int, default=60, metavar="SECONDS",
                        help="TTL of every answer (default 60)")
    parser.add_argument("--port", type=int, default=0, help="UDP port on 127.0.0.1 (default: any)")
    args = parser.parse_args(argv)

    dns = FakeDns(ttl=args.ttl, port=args.port)
    for name, ips in _pairs(args.record, "--record"):
        dns.set(name, [ip for ip in ips.split(",") if ip])
    for name, ms in _pairs(args.delay_ms, "--delay-ms"):
        dns.delay(name, int(ms))
    print(f"fakedns listening on {dns.server}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        dns.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

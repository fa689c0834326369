"""A TCP proxy in front of one member's peer port that can delay its traffic.

The kernel here has no netem, so latency and jitter between members come
from this proxy: it listens on the member's advertised peer address and
forwards to the member's real peer listener. Every chunk read in either
direction is held until now + delay + uniform(0, jitter) (never before the
chunk ahead of it on the same connection, since TCP delivers in order), so
one connection's round trips stretch and different connections' messages
arrive out of their sending order. The delay comes from a small JSON file
({"delay_ms": D, "jitter_ms": J}) that the harness rewrites; it is re-read
every 100 ms.

Usage: delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT CONTROL_FILE
"""

import collections
import json
import os
import random
import socket
import sys
import threading
import time

_settings = {"delay_ms": 0.0, "jitter_ms": 0.0}


def watch_control(path):
    mtime = None
    while True:
        try:
            m = os.stat(path).st_mtime_ns
            if m != mtime:
                with open(path) as f:
                    data = json.load(f)
                _settings["delay_ms"] = float(data.get("delay_ms", 0))
                _settings["jitter_ms"] = float(data.get("jitter_ms", 0))
                mtime = m
        except (OSError, ValueError):
            pass
        time.sleep(0.1)


class Pipe:
    """One direction of one connection: a reader and a delayed writer."""

    def __init__(self, src, dst, on_close):
        self.src, self.dst = src, dst
        self.queue = collections.deque()
        self.cv = threading.Condition()
        self.closed = False
        self.on_close = on_close
        self.last_release = 0.0
        threading.Thread(target=self.read, daemon=True).start()
        threading.Thread(target=self.write, daemon=True).start()

    def read(self):
        try:
            while True:
                data = self.src.recv(65536)
                if not data:
                    break
                delay = _settings["delay_ms"] + random.uniform(0, _settings["jitter_ms"])
                release = max(self.last_release, time.monotonic() + delay / 1000.0)
                self.last_release = release
                with self.cv:
                    self.queue.append((release, data))
                    self.cv.notify()
        except OSError:
            pass
        with self.cv:
            self.closed = True
            self.cv.notify()

    def write(self):
        try:
            while True:
                with self.cv:
                    while not self.queue and not self.closed:
                        self.cv.wait()
                    if not self.queue:
                        break
                    release, data = self.queue.popleft()
                wait = release - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.dst.sendall(data)
        except OSError:
            pass
        self.on_close()


def serve(listen_host, listen_port, target_host, target_port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((listen_host, listen_port))
    server.listen(64)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection((target_host, target_port), timeout=2)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def close(a=client, b=upstream):
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

        Pipe(client, upstream, close)
        Pipe(upstream, client, close)


def main():
    listen_host, listen_port, target_host, target_port, control = sys.argv[1:6]
    threading.Thread(target=watch_control, args=(control,), daemon=True).start()
    serve(listen_host, int(listen_port), target_host, int(target_port))


if __name__ == "__main__":
    main()

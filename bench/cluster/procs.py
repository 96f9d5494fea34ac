"""Processes and clients for bench/cluster.sh: `gremium serve` as a single process or
as a cluster (control replicas and media nodes against the machine's NATS and a
PostgreSQL database), the way tests/cluster.rs starts them, and a minimal WebSocket
client for the meeting event stream. Python stdlib only.
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def log(msg):
    print(f"[cluster-bench] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_json(method, url, token, body=None, timeout=10):
    """(status, parsed JSON or None) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


class Proc:
    """One `gremium serve` process, its log in the work directory."""

    def __init__(self, name, popen, port, log_path):
        self.name, self.popen, self.port, self.log_path = name, popen, port, log_path

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def alive(self):
        return self.popen.poll() is None

    def kill9(self):
        if self.alive():
            self.popen.kill()  # SIGKILL
        self.popen.wait()

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL if it does not stop within `timeout`."""
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {timeout} s of SIGTERM; killed")
                self.popen.kill()
                self.popen.wait()

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Setup:
    """A work directory, a database and (for a cluster) a name on NATS."""

    def __init__(self, bin_path, work, database_url, cluster_name=None, nats_url=None):
        self.bin, self.work, self.db = bin_path, work, database_url
        self.cluster_name, self.nats = cluster_name, nats_url
        self.master_key = os.urandom(32).hex()
        self.procs = []
        os.makedirs(work, exist_ok=True)

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if k not in ("GREMIUM_DATABASE_URL", "GREMIUM_NATS_URL", "GREMIUM_NODE_ID")}
        env["GREMIUM_MASTER_KEY"] = self.master_key
        env["RUST_LOG"] = "warn"
        env.update(extra or {})
        return env

    def config(self, file, capacity=None):
        text = (
            f'[database]\nurl = "{self.db}"\n\n'
            f'[storage]\nlocal_dir = "{self.work}/objects"\n\n'
            '[ice]\nallowed_local_addresses = ["127.0.0.1"]\n\n'
            "[ingest]\nmax_publishers_per_meeting = 32\n"
        )
        if self.cluster_name:
            text += (f'\n[cluster]\nname = "{self.cluster_name}"\nnats_url = "{self.nats}"\n'
                     "command_timeout_secs = 10\n")
            if capacity is not None:
                text += f"capacity = {capacity}\n"
        path = os.path.join(self.work, file)
        with open(path, "w") as f:
            f.write(text)
        return path

    def data_dir(self, role, node_id):
        # Control replicas (and the CLI) share one data directory: the signing key.
        return os.path.join(self.work, "control" if role in ("control", "all") else node_id)

    def start(self, role, node_id, port=None):
        """Start `gremium serve --role ROLE` and wait for its /healthz."""
        port = port or free_port()
        cfg = self.config(f"{node_id}.toml")
        log_path = os.path.join(self.work, f"{node_id}.log")
        with open(log_path, "ab") as logf:
            popen = subprocess.Popen(
                [self.bin, "serve", "--role", role, "--listen", f"127.0.0.1:{port}",
                 "--data-dir", self.data_dir(role, node_id), "--config", cfg],
                env=self.env({"GREMIUM_NODE_ID": node_id}),
                stdout=subprocess.DEVNULL, stderr=logf,
            )
        proc = Proc(node_id, popen, port, log_path)
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not proc.alive():
                raise SystemExit(f"{node_id} exited at start:\n{proc.tail()}")
            try:
                with urllib.request.urlopen(f"{proc.base}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return proc
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{node_id} did not come up:\n{proc.tail()}")

    def token(self, *roles):
        args = [self.bin, "token"]
        for r in roles:
            args += ["--role", r]
        args += ["--data-dir", self.data_dir("control", "cli"), "--config", self.config("cli.toml")]
        return subprocess.run(args, env=self.env(), check=True, capture_output=True,
                              text=True).stdout.strip()

    def stop_all(self):
        for p in self.procs:
            p.stop()


class Ws:
    """A WebSocket client (RFC 6455) for text events; a reader thread stamps each
    event with time.monotonic() as it arrives."""

    def __init__(self, host, port, path):
        self.sock = socket.create_connection((host, port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the WebSocket handshake got no answer")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        status_line = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status_line + b" ":
            raise ConnectionError(f"WebSocket handshake: {status_line!r}")
        self.sock.settimeout(None)
        self.events = []  # (monotonic seconds, event dict)
        self.cond = threading.Condition()
        self.closed = False
        self.send_lock = threading.Lock()
        threading.Thread(target=self._reader, daemon=True).start()

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.send_lock:
            self.sock.sendall(head + mask + masked)

    def _reader(self):
        message = b""
        try:
            while True:
                b0, b1 = self._read(2)
                opcode, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", self._read(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", self._read(8))
                mask = self._read(4) if b1 & 0x80 else None
                payload = self._read(n)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                if opcode == 0x9:
                    self._send(0xA, payload)
                elif opcode == 0x8:
                    break
                elif opcode in (0x0, 0x1, 0x2):
                    message += payload
                    if fin:
                        now = time.monotonic()
                        try:
                            event = json.loads(message)
                        except ValueError:
                            event = None
                        message = b""
                        if isinstance(event, dict):
                            with self.cond:
                                self.events.append((now, event))
                                self.cond.notify_all()
        except (OSError, ConnectionError, ValueError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, pred, after_index, timeout):
        """The first (index, time, event) at or after `after_index` with pred(event)."""
        deadline = time.monotonic() + timeout
        i = after_index
        with self.cond:
            while True:
                while i < len(self.events):
                    t, e = self.events[i]
                    if pred(e):
                        return i, t, e
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(left)

    def count(self):
        with self.cond:
            return len(self.events)

    def close(self):
        try:
            self._send(0x8, b"")
        except OSError:
            pass
        self.sock.close()

"""Real servers for integration tests, started by the tests on free loopback ports.

The servers themselves live in bench/_servers.py (the benchmarks use them without
pytest); here a missing binary fails the test loudly (CI installs them through
scripts/setup); nothing here ever touches a service the tests did not start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import _servers
from bench._servers import MissingBinaryError, Mosquitto, ServerProcess, free_port, wait_for_port

__all__ = [
    "LinkProxy",
    "MissingBinaryError",
    "Mosquitto",
    "Postgres",
    "Prometheus",
    "ServerProcess",
    "find_binary",
    "free_port",
    "make_pki",
    "pg_binary",
    "wait_for_port",
]


def find_binary(name: str) -> str:
    try:
        return _servers.find_binary(name)
    except MissingBinaryError as exc:
        pytest.fail(f"{exc} (needed by this test)")


class Prometheus(ServerProcess):
    """A private Prometheus (Debian's ``prometheus``) with its TSDB in ``workdir``.

    ``scrape`` are ``host:port`` targets of one job; ``rule_files`` are loaded as given.
    """

    def __init__(
        self,
        workdir: Path,
        scrape: list[str],
        *,
        job: str = "anbo",
        interval: str = "1s",
        rule_files: list[Path] | None = None,
    ) -> None:
        self.binary = find_binary("prometheus")
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "prometheus.yml"
        self.log = workdir / "prometheus.log"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [str(p) for p in rule_files or []],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": scrape}]}],
        }
        self.conf.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            self.binary,
            f"--config.file={self.conf}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus did not start: {self.log.read_text()[-2000:]}")

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; the decoded JSON, also for 4xx answers (bad query)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                data: dict[str, Any] = json.load(r)
        except urllib.error.HTTPError as exc:
            data = json.load(exc)
        return data


def pg_binary(name: str) -> str:
    """A PostgreSQL server binary (initdb, pg_ctl): on PATH, or Debian's versioned folder."""
    found = shutil.which(name)
    if found is None:
        versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
        found = str(versions[0]) if versions else None
    if found is None:
        pytest.fail(f"{name} is required by this test and is not installed (scripts/setup --dev installs it)")
    return found


class Postgres(ServerProcess):
    """A private PostgreSQL cluster (initdb + pg_ctl) in a temporary folder, on a free port.

    Never the machine's own databases. As root, the cluster runs as the ``postgres`` user
    (PostgreSQL refuses root), in a folder it owns outside pytest's private tmp_path.
    """

    def __init__(self, port: int | None = None) -> None:
        self.initdb = pg_binary("initdb")
        self.pg_ctl = pg_binary("pg_ctl")
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="anbo-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "postgres.log"
        self.running = False
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            self.prefix = [find_binary("runuser"), "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([self.initdb, "-D", str(self.data), "-U", "anbo", "-A", "trust", "-E", "UTF8", "--no-sync"])

    def _run(self, cmd: list[str], timeout: float = 60) -> None:
        done = subprocess.run(self.prefix + cmd, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{cmd[0]} failed: {done.stderr.decode()[-2000:]} {log}")

    @property
    def url(self) -> str:
        return f"postgresql://anbo@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "start"])
        self.running = True

    def stop(self, kill: bool = False) -> None:
        if not self.running:
            return
        mode = "immediate" if kill else "fast"
        self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])
        self.running = False

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class LinkProxy:
    """A TCP relay standing for a WAN link: ``cut()`` drops every connection and refuses
    new ones until ``restore()`` (a station's link to the bureau going down and back)."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target = target_port
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        self._thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._thread.start()

    start = restore

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._server is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not,
            # and the kernel would go on accepting on the listening socket
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    stop = cut


def make_pki(folder: Path, server_names: list[str], clients: list[str]) -> dict[str, tuple[Path, Path]]:
    """A test CA and certificates signed by it (openssl): the CA as ``ca`` → (cert, cert);
    each server name (SAN 127.0.0.1, localhost) and each client (CN = the name) → (cert, key)."""
    openssl = find_binary("openssl")
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=anbo test CA")  # fmt: skip
    out: dict[str, tuple[Path, Path]] = {"ca": (ca, ca)}
    for name in [*server_names, *clients]:
        key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
        ext = folder / f"{name}.ext"
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            if name in server_names
            else "extendedKeyUsage=clientAuth\n"
        )
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={name}",
        )
        run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
        out[name] = (cert, key)
    return out

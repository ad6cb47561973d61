"""A real Icecast2 server (Debian's ``icecast2``) and an ffmpeg source client, for the
capture gateway's tests: started on a free loopback port in a temporary folder with a
config of its own; nothing here touches a system Icecast."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.servers import ServerProcess, find_binary, free_port, wait_for_port

SOURCE_PASSWORD = "test-source"

CONFIG = """<icecast>
  <location>test</location>
  <admin>test@localhost</admin>
  <limits>
    <clients>100</clients>
    <sources>4</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>5</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>{burst}</burst-size>
  </limits>
  <authentication>
    <source-password>{password}</source-password>
    <relay-password>test-relay</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>test-admin</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket>
    <port>{port}</port>
    <bind-address>127.0.0.1</bind-address>
  </listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>{dir}</basedir>
    <logdir>{dir}/log</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
    <pidfile>{dir}/icecast.pid</pidfile>
  </paths>
  <logging>
    <accesslog>-</accesslog>
    <errorlog>-</errorlog>
    <loglevel>3</loglevel>
  </logging>
  <security>
    <chroot>0</chroot>
    {changeowner}
  </security>
</icecast>
"""


class Icecast(ServerProcess):
    """A private Icecast2 on a free port; ``burst`` bytes are sent to a new listener at once."""

    def __init__(self, workdir: Path, burst: int = 8192) -> None:
        self.binary = find_binary("icecast2")
        self.workdir = workdir
        self.port = free_port()
        (workdir / "log").mkdir(parents=True, exist_ok=True)
        # icecast2 refuses to run as root unless told to become someone else.
        owner = ""
        if os.geteuid() == 0:
            owner = "<changeowner><user>nobody</user><group>nogroup</group></changeowner>"
            os.chmod(workdir, 0o777)
            os.chmod(workdir / "log", 0o777)
        self.conf = workdir / "icecast.xml"
        self.conf.write_text(
            CONFIG.format(
                port=self.port, dir=workdir, password=SOURCE_PASSWORD, burst=burst, changeowner=owner
            )
        )
        self.proc = None

    def url(self, mount: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mount.lstrip('/')}"

    def source_url(self, mount: str) -> str:
        return f"icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{self.port}/{mount.lstrip('/')}"

    def start(self) -> None:
        with (self.workdir / "icecast.out").open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=out, stderr=out)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            log = self.workdir / "log" / "error.log"
            raise RuntimeError(
                f"icecast2 did not start: {(self.workdir / 'icecast.out').read_text()[-2000:]}"
                f"{log.read_text()[-2000:] if log.exists() else ''}"
            ) from None

    def mount_live(self, mount: str) -> bool:
        """Whether a source is connected to ``mount`` (a listener request answers 200)."""
        try:
            with urllib.request.urlopen(self.url(mount), timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            return False


class FfmpegSource:
    """ffmpeg as an Icecast source client: plays ``wav`` in real time (``-re``) to a mount,
    encoded as MP3 (or Ogg Vorbis), from ``start_s`` into the file (over and over with ``loop``)."""

    def __init__(
        self, icecast: Icecast, mount: str, wav: Path, *, codec: str = "mp3", loop: bool = False
    ) -> None:
        self.icecast = icecast
        self.loop = loop
        self.mount = mount
        self.wav = wav
        self.codec = codec
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    def start(self, start_s: float = 0.0) -> float:
        ffmpeg = shutil.which("ffmpeg") or find_binary("ffmpeg")
        enc = (
            ["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3", "-content_type", "audio/mpeg"]
            if self.codec == "mp3"
            else ["-c:a", "libvorbis", "-q:a", "5", "-f", "ogg", "-content_type", "application/ogg"]
        )
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-re"]
        cmd += ["-stream_loop", "-1"] if self.loop else []
        cmd += ["-ss", f"{start_s:.3f}", "-i", str(self.wav), *enc, self.icecast.source_url(self.mount)]
        deadline = time.monotonic() + 10
        for _attempt in range(3):  # a loaded machine: a refused first connection is retried
            with (self.icecast.workdir / f"source-{self.mount}.log").open("ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
            self.started_at = time.time()
            while not self.icecast.mount_live(self.mount):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            else:
                return self.started_at
            self.stop()
            time.sleep(0.2)
        raise RuntimeError(f"the ffmpeg source did not come up on /{self.mount}: {self.icecast.workdir}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

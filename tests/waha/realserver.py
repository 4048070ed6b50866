"""Real WAHA Core 2024.10.8, built from the pack in ../shared/waha-core and run on loopback.

    real = RealWaha.start(tmp_dir)        # builds once (about 2 minutes), then starts in ~2 s
    real.start_session(config)            # refuses a config without a loopback proxy
    real.restart()                        # same port and data folder: WAHA forgets configs
    real.stop()

The network rule is enforced twice: a session started through this kit must carry a proxy on
127.0.0.1, and the server runs with loopback_only.js, which refuses every connection to
anything but loopback (a session WHAGO starts without a proxy fails there instead of dialing
WhatsApp); `assert_stayed_on_loopback()` fails a test whose server tried.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.waha.simkit import ROOT, free_port

HERE = Path(__file__).resolve().parent
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def pack_dir() -> Path:
    """The WAHA Core pack: $WAHA_CORE_PACK, else ../shared/waha-core beside the checkout."""
    candidates = [os.environ.get("WAHA_CORE_PACK", ""), ROOT.parent / "shared" / "waha-core",
                  Path("/work/shared/waha-core")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "build.sh").is_file():
            return Path(candidate)
    raise RuntimeError("The WAHA Core pack (build.sh, run.sh) was not found: set WAHA_CORE_PACK.")


def build_dir() -> Path:
    return Path(os.environ.get("WAHA_CORE_DIR", "/var/cache/whago/waha-core-2024.10.8"))


def build() -> Path:
    """Build real WAHA Core once (build.sh skips a finished build of the same inputs)."""
    dest = build_dir()
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(pack_dir() / "build.sh"), str(dest)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"build.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return dest


def has_loopback_proxy(config: dict | None) -> bool:
    server = ((config or {}).get("proxy") or {}).get("server") or ""
    if "://" not in server:
        server = "http://" + server
    return urlsplit(server).hostname in LOOPBACK


class RealWaha:
    """One real WAHA Core process on 127.0.0.1."""

    def __init__(self, dest: Path, data_dir: Path, port: int, api_key: str):
        self.dest, self.data_dir, self.port, self.api_key = dest, data_dir, port, api_key
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir / "waha.log"
        self.proc: subprocess.Popen | None = None

    @classmethod
    def start_new(cls, data_dir: Path) -> RealWaha:
        server = cls(build(), data_dir, free_port(), "key-" + secrets.token_hex(8))
        server.run()
        return server

    def run(self) -> None:
        env = {**os.environ, "NODE_OPTIONS": f"--require {HERE / 'loopback_only.js'}", "WAHA_LOG_LEVEL": "info"}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [str(pack_dir() / "run.sh"), str(self.dest), str(self.port), self.api_key, str(self.data_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"real WAHA exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/api/server/version", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"real WAHA did not answer in 60 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port and data folder (WAHA Core forgets session configs)."""
        self.stop()
        self.run()

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-Api-Key": self.api_key, **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=20, **kwargs)

    def start_session(self, config: dict) -> requests.Response:
        """Configure and start `default`; refuses a config without a proxy on loopback."""
        if not has_loopback_proxy(config):
            raise AssertionError("a real WAHA session must carry a proxy on 127.0.0.1 (it would dial WhatsApp)")
        self.call("PUT", "/api/sessions/default", json={"config": config}).raise_for_status()
        return self.call("POST", "/api/sessions/default/start")

    def reset(self) -> None:
        """Stop the session, so the next test starts from a stopped `default`."""
        self.call("POST", "/api/sessions/default/stop")

    def assert_stayed_on_loopback(self) -> None:
        refused = [line for line in self.log_path.read_text(errors="replace").splitlines() if "[loopback-only]" in line]
        assert not refused, "real WAHA tried to leave loopback:\n" + "\n".join(refused[:5])

"""The local runtime: WAHA simulator processes on this machine, for the embedded mode.

Each container is a `python -m waha.simulator` process, tracked by files under
var/waha/<name>/: spec.json (what to run), pid, log and data (its "volume").
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from django.conf import settings

from .base import ContainerInfo, ContainerMissing, ContainerSpec, Runtime, RuntimeFailure, Stats


def _memory_limit_bytes(text: str) -> int:
    """Docker-style sizes (512m, 4g) in bytes; 0 when unset or unreadable."""
    text = (text or "").strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text) if text else 0
    except ValueError:
        return 0


class LocalRuntime(Runtime):
    """Simulator subprocesses; they outlive the worker and are found again by their pid files."""

    name = "local"

    def __init__(self, root: Path | None = None):
        self._root = Path(root) if root else None

    @property
    def root(self) -> Path:
        return self._root or Path(settings.VAR_DIR) / "waha"

    def _dir(self, runtime_id: str) -> Path:
        if not runtime_id or "/" in runtime_id or runtime_id.startswith("."):
            raise ContainerMissing(f"Invalid local container id {runtime_id!r}.")
        return self.root / runtime_id

    def _spec(self, runtime_id: str) -> dict:
        path = self._dir(runtime_id) / "spec.json"
        if not path.exists():
            raise ContainerMissing(f"No local container {runtime_id}.")
        return json.loads(path.read_text())

    def _pid(self, runtime_id: str) -> int | None:
        """The pid of the running simulator of that container, None when it is not running."""
        path = self._dir(runtime_id) / "pid"
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            # Our own dead child: reap it.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return None
        if b"waha.simulator" not in cmdline or f"--data-dir\x00{self._dir(runtime_id)}".encode() not in cmdline:
            return None  # the pid was reused by another process
        return pid

    def create(self, spec: ContainerSpec) -> str:
        folder = self._dir(spec.name)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "spec.json").write_text(
            json.dumps(
                {
                    "name": spec.name,
                    "port": spec.port,
                    "engine": spec.engine,
                    "env": spec.env,
                    "labels": spec.labels,
                    "memory_limit": spec.memory_limit,
                    "created": time.time(),
                }
            )
        )
        (folder / "spec.json").chmod(0o600)
        try:
            self.start(spec.name)
        except RuntimeFailure:
            self.remove(spec.name, volume=True)
            raise
        return spec.name

    def start(self, runtime_id: str) -> None:
        if self._pid(runtime_id):
            return
        spec = self._spec(runtime_id)
        folder = self._dir(runtime_id)
        # The API key travels in the environment (WAHA_API_KEY), never on the command line.
        env = {**os.environ, **spec["env"], "PYTHONUNBUFFERED": "1"}
        command = [
            sys.executable, "-m", "waha.simulator",
            "--port", str(spec["port"]),
            "--engine", spec["engine"],
            "--data-dir", str(folder / "data"),
            "--control",
        ]
        with (folder / "log").open("ab") as log:
            try:
                process = subprocess.Popen(
                    command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            except OSError as exc:
                raise RuntimeFailure(f"Could not start the simulator for {runtime_id}: {exc}") from exc
        (folder / "pid").write_text(str(process.pid))

    def stop(self, runtime_id: str) -> None:
        self._spec(runtime_id)
        pid = self._pid(runtime_id)
        if not pid:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._pid(runtime_id):
            time.sleep(0.1)
        if self._pid(runtime_id):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
            self._pid(runtime_id)

    def restart(self, runtime_id: str) -> None:
        self.stop(runtime_id)
        self.start(runtime_id)

    def resize(self, runtime_id: str, memory_limit: str, cpu_limit: float) -> None:
        """Recorded for the stats (a simulator process of the embedded mode is not confined)."""
        spec = self._spec(runtime_id)
        spec["memory_limit"] = memory_limit
        path = self._dir(runtime_id) / "spec.json"
        path.write_text(json.dumps(spec))
        path.chmod(0o600)

    def remove(self, runtime_id: str, volume: bool = False) -> None:
        folder = self._dir(runtime_id)
        if not folder.exists():
            return
        self.stop(runtime_id)
        if volume:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            # The data stays (like a Docker volume); the container itself is gone.
            for name in ("spec.json", "pid"):
                (folder / name).unlink(missing_ok=True)

    def remove_volume_of(self, name: str) -> None:
        folder = self._dir(name)
        if not (folder / "spec.json").exists():
            shutil.rmtree(folder, ignore_errors=True)

    def list_volumes(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "data").is_dir())

    def logs(self, runtime_id: str, tail: int = 200) -> str:
        self._spec(runtime_id)
        path = self._dir(runtime_id) / "log"
        if not path.exists():
            return ""
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def stats(self, runtime_id: str) -> Stats:
        spec = self._spec(runtime_id)
        pid = self._pid(runtime_id)
        if not pid:
            raise RuntimeFailure(f"The simulator of {runtime_id} is not running.")
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu_seconds() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        try:
            start, t0 = cpu_seconds(), time.monotonic()
            time.sleep(0.5)
            used, elapsed = cpu_seconds() - start, time.monotonic() - t0
            rss_kb = next(
                int(line.split()[1])
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
        except (OSError, StopIteration) as exc:
            raise RuntimeFailure(f"Could not read the stats of {runtime_id}: {exc}") from exc
        limit = _memory_limit_bytes(spec.get("memory_limit", "")) or os.sysconf("SC_PAGE_SIZE") * os.sysconf(
            "SC_PHYS_PAGES"
        )
        return Stats(cpu_percent=round(100.0 * used / elapsed, 2), memory_bytes=rss_kb * 1024, memory_limit=limit)

    def status(self, runtime_id: str) -> str:
        try:
            self._spec(runtime_id)
        except ContainerMissing:
            return "missing"
        return "running" if self._pid(runtime_id) else "exited"

    def list(self) -> list[ContainerInfo]:
        if not self.root.exists():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            try:
                spec = json.loads((folder / "spec.json").read_text())
            except (OSError, ValueError):
                continue
            if spec.get("labels", {}).get("whago.instance") != settings.WHAGO_INSTANCE:
                continue
            found.append(
                ContainerInfo(
                    runtime_id=folder.name,
                    name=folder.name,
                    status=self.status(folder.name),
                    labels=spec.get("labels", {}),
                    created_at=datetime.fromtimestamp(spec.get("created", 0)).astimezone(),
                )
            )
        return found

    def check(self) -> str:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeFailure(f"Cannot write {self.root}: {exc}") from exc
        return f"local simulator processes under {self.root}"

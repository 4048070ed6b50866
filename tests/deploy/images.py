"""The container images of the deployment tests, built here without any registry.

- whago/deploy-base:bookworm: a debootstrap of Debian bookworm (minbase, from the machine's own
  apt sources) with Python 3 and venv, gettext, libzbar0, PostgreSQL 15 and Redis, docker-imported.
  It carries a hash of its recipe and is built again only when the recipe changes. The
  application image is built FROM it (the Dockerfile's BASE_IMAGE), and so are:
- whago/deploy-postgres:15 and whago/deploy-redis:7 (tests/deploy/images/*): what the official
  postgres and redis images offer docker-compose.yml (POSTGRES_* variables, pg_isready,
  redis-cli), on Debian's packages; labelled with a hash of their sources, rebuilt when it changes.
- the wheelhouse of requirements.txt: `pip wheel` by the machine's pip, with the machine's own
  index configuration, kept per hash of requirements.txt and served on 127.0.0.1 to the pip
  of `docker build --network host` (PIP_NO_INDEX / PIP_FIND_LINKS build arguments).

Usage: python3 -m tests.deploy.images [--force-base]  (builds what is missing or stale).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from waha.simulator.image import _unmount_under, image_id, image_label
from waha.simulator.image import debian_mirror as apt_mirror

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VAR = Path(os.environ.get("WHAGO_IMAGE_WORKDIR", ROOT / "var"))
SUITE = "bookworm"
BASE_IMAGE = "whago/deploy-base:bookworm"
HASH_LABEL = "whago.deploy.hash"
# What the base holds. Daemons are never started while it is made (policy-rc.d), and the
# cluster Debian's postgresql package creates is removed: the postgres image makes its own.
BASE_PACKAGES = (
    "python3", "python3-venv", "gettext", "libzbar0", "ca-certificates", "netbase",
    "postgresql-15", "redis-server",
)
BASE_RECIPE = f"v1 {SUITE} {' '.join(BASE_PACKAGES)} policy-rc.d no-main-cluster"
SERVICE_IMAGES = {"postgres": "whago/deploy-postgres:15", "redis": "whago/deploy-redis:7"}


def log(message: str) -> None:
    print(f"deploy-images: {message}", file=sys.stderr, flush=True)


def docker(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """`docker …`, output captured and shown when it fails."""
    kwargs.setdefault("capture_output", True)
    result = subprocess.run(["docker", *args], text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}… exited {result.returncode}:\n"
                           f"{(result.stdout or '')[-4000:]}{(result.stderr or '')[-4000:]}")
    return result


def docker_build(*args: str) -> None:
    """`docker build` with the legacy builder (no BuildKit here); a failed build leaves nothing:
    neither its container (--force-rm) nor the images of the steps that succeeded."""
    result = docker("build", "--force-rm", *args, check=False, env=dict(os.environ, DOCKER_BUILDKIT="0"))
    if result.returncode != 0:
        steps = re.findall(r"^ ---> ([0-9a-f]{12})$", result.stdout, re.M)
        if steps:  # removing the last step's image removes its untagged parents too
            docker("image", "rm", steps[-1], check=False)
        raise RuntimeError(f"docker build {' '.join(args[-3:])} exited {result.returncode}:\n"
                           f"{result.stdout[-4000:]}{result.stderr[-4000:]}")


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """A machine-wide lock under var/: concurrent test runs build each image once."""
    VAR.mkdir(parents=True, exist_ok=True)
    with open(VAR / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def debian_mirror() -> str:
    """The machine's own Debian mirror for SUITE (apt's sources), never a host written here."""
    return apt_mirror(SUITE)


def _clean_rootfs(rootfs: Path) -> None:
    """Emptied: caches and documentation; removed: the cluster of Debian's postgresql package."""
    for junk, keep in (("var/cache/apt/archives", True), ("var/lib/apt/lists", True), ("usr/share/doc", True),
                       ("usr/share/man", True), ("usr/share/info", True), ("var/lib/postgresql/15", False),
                       ("etc/postgresql/15", False)):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
        if keep:
            (rootfs / junk).mkdir(parents=True, exist_ok=True)


def build_base(recipe_hash: str) -> None:
    """debootstrap in two stages (so that policy-rc.d is in place before any package is
    configured: a daemon started in the chroot would bind the host's ports), then docker import."""
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing: run scripts/setup.sh all")
    cache = VAR / "cache" / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="deploy-rootfs-", dir=VAR))
    started = time.monotonic()
    mirror = debian_mirror()
    try:
        log(f"debootstrap {SUITE} minbase + {','.join(BASE_PACKAGES)} into {rootfs} (a few minutes, once)")
        subprocess.run(
            ["debootstrap", "--foreign", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             f"--cache-dir={cache}", SUITE, str(rootfs), mirror],
            check=True, stdout=subprocess.DEVNULL,
        )
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# Nothing starts services in an image.\nexit 101\n")
        policy.chmod(0o755)
        subprocess.run(["chroot", str(rootfs), "/debootstrap/debootstrap", "--second-stage"],
                       check=True, stdout=subprocess.DEVNULL)
        _unmount_under(rootfs)
        _clean_rootfs(rootfs)
        log(f"debootstrap done in {time.monotonic() - started:.0f} s; docker import {BASE_IMAGE}")
        previous = image_id(BASE_IMAGE)
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            subprocess.run(
                ["docker", "import",
                 "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "--change", "ENV LANG=C.UTF-8",
                 "--change", f"LABEL {HASH_LABEL}={recipe_hash}",
                 "-", BASE_IMAGE],
                stdin=tar.stdout, stdout=subprocess.DEVNULL, check=True,
            )
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                raise RuntimeError("tar of the rootfs failed")
        if previous and previous != image_id(BASE_IMAGE):
            docker("image", "rm", previous, check=False)
    finally:
        _unmount_under(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)
    log(f"{BASE_IMAGE} ready in {time.monotonic() - started:.0f} s")


def ensure_base(force: bool = False) -> str:
    """The base image, built when missing or made by another recipe; returns its name."""
    recipe_hash = digest(BASE_RECIPE)
    with locked("deploy-base"):
        if force or image_label(BASE_IMAGE, HASH_LABEL) != recipe_hash:
            build_base(recipe_hash)
    return BASE_IMAGE


def ensure_service_images() -> dict[str, str]:
    """The PostgreSQL and Redis images on the base; {"postgres": image, "redis": image}."""
    base = ensure_base()
    base_id = image_id(base) or ""
    with locked("deploy-services"):
        for name, image in SERVICE_IMAGES.items():
            context = HERE / "images" / name
            files = sorted(p for p in context.iterdir() if p.is_file())
            want = digest(base_id, *(f"{p.name}\n".encode() + p.read_bytes() for p in files))
            if image_label(image, HASH_LABEL) == want:
                continue
            previous = image_id(image)
            docker_build("--label", f"{HASH_LABEL}={want}", "--build-arg", f"BASE_IMAGE={base}",
                         "-t", image, str(context))
            if previous and previous != image_id(image):
                docker("image", "rm", previous, check=False)
    return dict(SERVICE_IMAGES)


def _image_python(image: str) -> str:
    return docker("run", "--rm", "--network", "none", image, "python3", "-c",
                  "import sys; print(sys.version.split()[0])").stdout.strip()


def _host_pip(version: str) -> Path:
    """pip of a virtual environment made with the system's python3, which must be the base
    image's very Python (Debian bookworm's on both): requirements' markers (python_full_version)
    are evaluated by the interpreter that resolves them."""
    system = Path("/usr/bin/python3")
    found = subprocess.run([str(system), "-c", "import sys; print(sys.version.split()[0])"],
                           capture_output=True, text=True).stdout.strip() if system.exists() else "none"
    if found != version:
        raise RuntimeError(f"{system} is Python {found}, the base image's is {version}: the wheelhouse must be "
                           "resolved by the same Python (a Debian 12 machine has it)")
    venv = VAR / "cache" / f"deploy-pip-{version}"
    if not (venv / "bin" / "pip").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(system), "-m", "venv", str(venv)], check=True)
    return venv / "bin" / "pip"


def wheelhouse() -> Path:
    """Wheels of every requirement for the base image's Python, made by this machine's pip
    configuration (its index, certificates, local wheel folders); kept per hash of
    requirements.txt and Python version."""
    requirements = ROOT / "requirements.txt"
    version = _image_python(ensure_base())
    target = VAR / "cache" / "wheelhouse" / digest(version, requirements.read_bytes())[:16]
    with locked("deploy-wheelhouse"):
        if not (target / ".complete").exists():
            started = time.monotonic()
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            made = subprocess.run([str(_host_pip(version)), "wheel", "-q", "--disable-pip-version-check",
                                   "-r", str(requirements), "-w", str(target)], capture_output=True, text=True)
            if made.returncode != 0:
                raise RuntimeError(f"pip wheel failed:\n{made.stdout[-4000:]}{made.stderr[-4000:]}")
            (target / ".complete").write_text("")
            log(f"wheelhouse {target.name} made in {time.monotonic() - started:.0f} s")
            for old in target.parent.iterdir():  # wheelhouses of older requirements
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
    return target


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """A directory over HTTP on 127.0.0.1 (a port of its own) while the block runs; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def build_app(tag: str, labels: dict[str, str] | None = None) -> float:
    """`docker build` of the real Dockerfile at the repository root on the local base, pip
    installing from the local wheelhouse; returns the seconds it took."""
    base = ensure_base()
    wheels = wheelhouse()
    started = time.monotonic()
    label_args = [arg for key, value in (labels or {}).items() for arg in ("--label", f"{key}={value}")]
    with serve(wheels) as url:
        docker_build("--network", "host", "--build-arg", f"BASE_IMAGE={base}",
                     "--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"PIP_FIND_LINKS={url}",
                     *label_args, "-t", tag, str(ROOT))
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.deploy.images", description=__doc__.split("\n")[0])
    parser.add_argument("--force-base", action="store_true", help="debootstrap the base image again")
    args = parser.parse_args(argv)
    started = time.monotonic()
    ensure_base(force=args.force_base)
    ensure_service_images()
    wheelhouse()
    log(f"up to date ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the simulator's container image locally, without any registry.

1. whago/debian-python:bookworm: debootstrap --variant=minbase bookworm with python3 and the
   QR packages, then `docker import` (skipped when the image exists).
2. whago/waha-simulator:latest: `docker build` of waha/simulator/Dockerfile, labelled with a
   hash of the simulator sources (skipped when an image with that label exists).

Usage: python3 -m waha.simulator.image [--force] [--force-base]. Standard library only.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE = "whago/waha-simulator:latest"
BASE_IMAGE = "whago/debian-python:bookworm"
HASH_LABEL = "whago.simulator.hash"
SUITE = "bookworm"
PACKAGES = "python3,python3-qrcode,python3-pil,python3-png"
SIM_DIR = Path(__file__).resolve().parent
ROOT = SIM_DIR.parent.parent


def debian_mirror(suite: str = SUITE) -> str:
    """The machine's own Debian mirror for `suite` (apt's sources): no host is written in the code."""
    apt = Path("/etc/apt")
    files = sorted(apt.glob("sources.list.d/*.sources")) + [apt / "sources.list"]
    files += sorted(apt.glob("sources.list.d/*.list"))
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        if path.suffix == ".sources":  # deb822 stanzas
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if ("deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split()
                        and "main" in fields.get("Components", "").split()):
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
                    return words[1]
    raise RuntimeError(f"no apt source for Debian {suite} main in /etc/apt: the image needs one")
VAR = Path(os.environ.get("WHAGO_IMAGE_WORKDIR", ROOT / "var"))


def log(message: str) -> None:
    """Progress line on stderr."""
    print(f"simulator-image: {message}", file=sys.stderr, flush=True)


def source_files() -> list[Path]:
    """Files that go into the image (their content defines the hash)."""
    files = sorted(p for p in SIM_DIR.glob("*.py"))
    return files + [SIM_DIR / "Dockerfile"]


def source_hash() -> str:
    """sha256 over the names and contents of the simulator sources."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _docker(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, text=True, **kwargs)


def image_label(image: str, label: str) -> str | None:
    """The label's value on a local image; None when the image or the label is missing."""
    result = _docker(
        "image", "inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}', image,
        check=False, capture_output=True,
    )
    if result.returncode != 0:
        return None
    value = result.stdout.strip()
    return value if value and value != "<no value>" else None


def image_id(image: str) -> str | None:
    """Id of a local image, None when missing."""
    result = _docker("image", "inspect", "--format", "{{.Id}}", image, check=False, capture_output=True)
    return result.stdout.strip() if result.returncode == 0 else None


def image_exists(image: str) -> bool:
    """Whether a local image has this reference."""
    return _docker("image", "inspect", image, check=False, capture_output=True).returncode == 0


def _unmount_under(path: Path) -> None:
    """Unmount anything debootstrap left mounted inside the rootfs (before deleting it)."""
    target = str(path.resolve())
    with open("/proc/mounts") as fh:
        points = [line.split()[1] for line in fh]
    for point in sorted((p for p in points if p == target or p.startswith(target + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def build_base() -> None:
    """debootstrap a minimal Debian with python3 + QR packages and docker-import it."""
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is missing: run scripts/setup.sh all (apt-get install debootstrap)")
    VAR.mkdir(parents=True, exist_ok=True)
    cache = VAR / "cache" / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="simulator-rootfs-", dir=VAR))
    started = time.monotonic()
    try:
        log(f"debootstrap {SUITE} minbase + {PACKAGES} into {rootfs}")
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", f"--cache-dir={cache}",
             SUITE, str(rootfs), debian_mirror()],
            check=True, stdout=subprocess.DEVNULL,
        )
        _unmount_under(rootfs)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/info", "usr/share/locale"):
            target = rootfs / junk
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        log(f"debootstrap done in {time.monotonic() - started:.0f} s; docker import {BASE_IMAGE}")
        previous = image_id(BASE_IMAGE)
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            _docker(
                "import",
                "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change", "ENV LANG=C.UTF-8",
                "--change", "LABEL whago.base=debian-python-bookworm",
                "-", BASE_IMAGE,
                stdin=tar.stdout, stdout=subprocess.DEVNULL,
            )
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                raise SystemExit("tar of the rootfs failed")
        if previous and previous != image_id(BASE_IMAGE):  # the replaced base, unless a container still uses it
            _docker("image", "rm", previous, check=False, capture_output=True)
    finally:
        _unmount_under(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)
    log(f"base image ready in {time.monotonic() - started:.0f} s")


def build_image(digest: str) -> None:
    """docker build the simulator on the base image, labelled with the sources hash."""
    with tempfile.TemporaryDirectory(prefix="simulator-context-", dir=VAR) as ctx:
        context = Path(ctx)
        pkg = context / "waha" / "simulator"
        pkg.mkdir(parents=True)
        (context / "waha" / "__init__.py").write_text("")
        for path in source_files():
            target = context / "Dockerfile" if path.name == "Dockerfile" else pkg / path.name
            shutil.copyfile(path, target)
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        result = _docker("build", "--quiet", "--label", f"{HASH_LABEL}={digest}", "-t", IMAGE, str(context),
                         env=env, check=False, capture_output=True)
        if result.returncode != 0:  # the legacy builder's deprecation notice is only worth showing on failure
            sys.stderr.write(result.stdout + result.stderr)
            raise subprocess.CalledProcessError(result.returncode, result.args)
    # the previous simulator image, now untagged, goes away (only ours carry this label)
    _docker("image", "prune", "--force", "--filter", f"label={HASH_LABEL}", check=False,
            stdout=subprocess.DEVNULL)


def ensure(force: bool = False, force_base: bool = False) -> str:
    """Make sure the image is present and current; returns 'up to date' or 'built'."""
    VAR.mkdir(parents=True, exist_ok=True)
    with open(VAR / "simulator-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent `make test` runs build once
        digest = source_hash()
        if not force and not force_base and image_label(IMAGE, HASH_LABEL) == digest:
            return "up to date"
        if force_base or not image_exists(BASE_IMAGE):
            build_base()
        build_image(digest)
        return "built"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python3 -m waha.simulator.image", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild the simulator image even if up to date")
    parser.add_argument("--force-base", action="store_true", help="also re-run debootstrap for the base image")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        outcome = ensure(args.force, args.force_base)
    except subprocess.CalledProcessError as exc:
        log(f"failed: {' '.join(map(str, exc.cmd))} exited {exc.returncode}")
        return 1
    log(f"{IMAGE} {outcome} ({time.monotonic() - started:.1f} s, sources {source_hash()[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

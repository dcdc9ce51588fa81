"""Real filesystems that fail under the store, for the store-fault tests.

- `SmallDisk`: a tmpfs of a few megabytes, mounted for the test. `fill()` writes a filler file
  until the kernel answers ENOSPC, so SQLite's next write fails with SQLITE_FULL exactly as on a
  full production disk; `free()` deletes it and writes succeed again, with no restart.
- `Ext4Disk`: a loop-mounted ext4 image with `errors=remount-ro`. `fail()` reports a filesystem
  error through ext4's own sysfs knob, and the kernel remounts it read-only under the open
  database, as it does when a real disk fails. (It stays read-only until unmounted: the kernel
  does not let a remount make it writable again under open files, so recovery is `SmallDisk`'s.)

Both need root (CI runs as root). Without the mechanism a test skips, except under CI
(`CI=true`), where it fails: CI must really run these tests.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .opa_support import in_ci


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _unmount(path: Path) -> None:
    if _run("umount", str(path)).returncode != 0:
        _run("umount", "--lazy", str(path))  # something still holds it: detach it anyway


class SmallDisk:
    def __init__(self, path: Path, size: str = "8m") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None:
            _unavailable("no mount command: cannot mount a tmpfs for the full-disk test")
        done = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
        if done.returncode != 0:
            _unavailable(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}")
        self._filler = path / "filler"

    def fill(self) -> None:
        """Take every free block: the next write that needs one gets ENOSPC."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        block = b"\0" * 65536
        try:
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(block) == 1:
                        break
                    block = block[: len(block) // 2]
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self._filler.unlink()

    def unmount(self) -> None:
        _unmount(self.path)


class Ext4Disk:
    def __init__(self, root: Path, size_mb: int = 16) -> None:
        for tool in ("mount", "mkfs.ext4"):
            if shutil.which(tool) is None:
                _unavailable(f"no {tool}: cannot make the ext4 disk for the read-only test")
        self.image = root / "disk.img"
        self.path = root / "ext4"
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as image:
            image.truncate(size_mb * 1024 * 1024)
        made = _run("mkfs.ext4", "-q", "-F", str(self.image))
        if made.returncode != 0:
            _unavailable(f"mkfs.ext4 failed: {made.stderr.strip()}")
        done = _run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path))
        if done.returncode != 0:
            _unavailable(f"cannot loop-mount an ext4 image (root and a loop device needed): {done.stderr.strip()}")
        device = next(
            (line.split()[0] for line in Path("/proc/mounts").read_text().splitlines()
             if line.split()[1] == str(self.path)),
            "",
        )  # fmt: skip
        self._trigger = Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"
        if not self._trigger.exists():
            self.unmount()
            _unavailable(f"this kernel has no {self._trigger}: cannot fail the ext4 disk")

    def fail(self) -> None:
        """A filesystem error: ext4 remounts itself read-only under the open files."""
        self._trigger.write_text("sendgate test: disk failed\n")
        options = next(line.split()[3] for line in Path("/proc/mounts").read_text().splitlines()
                       if line.split()[1] == str(self.path))  # fmt: skip
        assert {"ro", "emergency_ro"} & set(options.split(",")), options  # emergency_ro: ext4's own flag

    def unmount(self) -> None:
        _unmount(self.path)

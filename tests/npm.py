"""npm packages for tests that run real JavaScript clients and servers (the guide's frontend
code, the `openai` npm package, `oidc-provider`): node and npm come from the machine (.ci/run
installs them), the packages from each test folder's package-lock.json, installed once per lock
file into a cache folder outside the repository."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest


def tool(name: str) -> str:
    """`node` or `npm`: required in CI, a skip with a reason elsewhere."""
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed: .ci/run installs nodejs and npm")
    pytest.skip(f"{name} is not installed (apt-get install -y nodejs npm)")


def npm_packages(folder: Path, cache_name: str) -> Path:
    """`folder`'s locked npm packages, installed once (`npm ci`) into
    ~/.cache/chat-studio/<cache_name>/<lock hash>; returns that node_modules."""
    tool("node")
    npm = tool("npm")
    lock = (folder / "package-lock.json").read_bytes()
    base = Path(os.environ.get(f"{cache_name.upper().replace('-', '_')}_CACHE")
                or Path.home() / ".cache" / "chat-studio" / cache_name)
    target = base / hashlib.sha256(lock).hexdigest()[:16]
    if not (target / "node_modules" / ".package-lock.json").exists():
        staging = base / f"staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(folder / name, staging / name)
        result = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                                cwd=staging, capture_output=True, text=True, timeout=600,
                                check=False)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.fail(f"npm ci failed: {result.stderr[-2000:]}")
        try:
            staging.rename(target)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"

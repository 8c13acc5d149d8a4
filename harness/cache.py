"""Where dlgrade keeps what it computes once per runner, and the hash that keys it to the reference recipe.

The cache directory: `--cache DIR` of the commands that use it (check, calibrate, audit, grade, demo), else
$DLGRADE_CACHE, else ~/.cache/dlgrade. It holds `calibration/` (the reference solution's times, harness/calibrate.py)
and `backbones/` (pretrained backbones, reference/backbones.py). Both are keyed by `recipe_hash()`: editing the
reference recipe builds them again.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from harness.errors import UsageError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "reference"


def cache_root() -> Path:
    """$DLGRADE_CACHE or ~/.cache/dlgrade: calibrations and pretrained backbones."""
    return Path(os.environ.get("DLGRADE_CACHE", Path.home() / ".cache" / "dlgrade"))


def use_cache(directory: str | Path) -> Path:
    """`--cache DIR`: this command's cache, created if missing, as $DLGRADE_CACHE (so that the processes it starts,
    local grading workers included, use it too). Refused when it cannot be written."""
    path = Path(directory).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--cache {directory}: cannot create it ({exc.strerror or exc})") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--cache {directory}: not a directory this user can write (calibrations and backbones "
                         "are written there)")
    os.environ["DLGRADE_CACHE"] = str(path)
    return path


def recipe_hash() -> str:
    """Hash of the reference recipe's source (reference/train.py and reference/models/*.py)."""
    digest = hashlib.sha256()
    for path in sorted([RECIPE_DIR / "train.py", *(RECIPE_DIR / "models").glob("*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()

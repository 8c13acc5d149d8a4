"""Where dlgrade keeps what it computes once per runner, and the hash that keys it to the reference recipe.

$DLGRADE_CACHE (default ~/.cache/dlgrade): `calibration/` (the reference solution's times, harness/calibrate.py) and
`backbones/` (pretrained backbones, reference/backbones.py). Both are keyed by `recipe_hash()`: editing the reference
recipe builds them again.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

RECIPE_DIR = Path(__file__).resolve().parent.parent / "reference"


def cache_root() -> Path:
    """$DLGRADE_CACHE or ~/.cache/dlgrade: calibrations and pretrained backbones."""
    return Path(os.environ.get("DLGRADE_CACHE", Path.home() / ".cache" / "dlgrade"))


def recipe_hash() -> str:
    """Hash of the reference recipe's source (reference/train.py and reference/models/*.py)."""
    digest = hashlib.sha256()
    for path in sorted([RECIPE_DIR / "train.py", *(RECIPE_DIR / "models").glob("*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()

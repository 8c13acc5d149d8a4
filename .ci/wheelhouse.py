#!/usr/bin/env python3
"""Download every wheel a worker node needs to install dlgrade offline (`pip install --no-index`), for a target
Python and platform. See docs/install.md.

What it holds: the core dependencies of pyproject.toml (what grading one notebook needs) and their dependencies,
setuptools (the build backend of `pip install -e .`), and the extras named by --extras. Not torch or torchvision, so
none of their CUDA libraries either: a GPU node keeps the CUDA torch it has (>= 2.11), unless --with-torch. --skip
leaves out wheels of packages the node already has (to keep the folder small); an install then fails offline only if
the node's version does not satisfy a requirement, and pip says which.

For the Python version of the interpreter that runs this script (pip evaluates dependency markers such as
`aiohttp; python_version == "3.12"` against the running interpreter, not against --python-version: pypa/pip#11010),
and for any manylinux platform (--platform).

Two passes, because a few dependencies publish no wheel (fvcore, iopath): pass 1 downloads for this machine and builds
a wheel of every source-only package, which must be pure Python (py3-none-any, valid on any target); pass 2 downloads
binary wheels only, for the target.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH = {"torch", "torchvision"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_name(requirement: str) -> str:
    return normalize(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def requirements(extras: list[str], with_torch: bool) -> list[str]:
    """The core dependencies plus the extras' (self-references like dlgrade[dask] expanded)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    optional = pyproject["project"]["optional-dependencies"]
    wanted, todo = list(pyproject["project"]["dependencies"]), list(extras)
    while todo:
        extra = todo.pop()
        if extra not in optional:
            sys.exit(f"wheelhouse: no extra '{extra}' in pyproject.toml: one of {', '.join(optional)}")
        for req in optional[extra]:
            own = re.fullmatch(r"dlgrade\[([\w,]+)\]", req)
            if own:
                todo.extend(own.group(1).split(","))
            else:
                wanted.append(req)
    return [r for r in wanted if with_torch or project_name(r) not in TORCH]


def build_requirements() -> list[str]:
    """The build backend: `pip install -e .` needs it in the folder (build isolation installs it from there)."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]


def platform_tags(platform: str) -> list[str]:
    """manylinux_2_28_x86_64 -> every manylinux tag a glibc 2.28 machine accepts, newest first (pip matches --platform
    exactly, while most wheels are tagged manylinux_2_17 / manylinux2014)."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    glibc, arch = int(m.group(1)), m.group(2)
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(glibc, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def wheel_source_only(reqs: list[str], dest: Path) -> None:
    """Pass 1: wheels built here of the dependencies that publish only source; refuse any that is not pure Python."""
    with tempfile.TemporaryDirectory() as tmp:
        sources, built = Path(tmp) / "sources", Path(tmp) / "built"
        pip("download", "--quiet", "--dest", str(sources), *reqs)
        sdists = [str(p) for p in sources.iterdir() if not p.name.endswith(".whl")]
        if sdists:
            pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(built), *sdists)
        impure = [w.name for w in built.glob("*.whl") if not w.name.endswith("-none-any.whl")]
        if impure:
            sys.exit(f"wheelhouse: built from source, not pure Python, so not valid on another target: {impure}")
        for wheel in built.glob("*.whl"):
            wheel.replace(dest / wheel.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default="wheelhouse", help="the folder (created; its wheels are kept)")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64", help="the node's platform tag")
    parser.add_argument("--extras", default="", help="extras of pyproject.toml to add, comma-separated (e.g. dask)")
    parser.add_argument("--skip", default="", help="packages the node already has, space-separated: their wheels "
                        "are left out (e.g. 'numpy scipy scikit-learn matplotlib pillow')")
    parser.add_argument("--with-torch", action="store_true", help="also torch, torchvision and their CUDA libraries")
    args = parser.parse_args()

    python_version = "%d.%d" % sys.version_info[:2]
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    runtime = requirements([e for e in args.extras.split(",") if e], args.with_torch)
    reqs = runtime + build_requirements()
    wheel_source_only(reqs, dest)
    platforms = [f"--platform={tag}" for tag in platform_tags(args.platform)]
    pip("download", "--quiet", "--dest", str(dest), "--find-links", str(dest), "--only-binary=:all:",
        "--implementation", "cp", "--python-version", python_version, *platforms, *reqs)

    skip = {normalize(name) for name in args.skip.split()}
    for wheel in dest.glob("*.whl"):
        name = normalize(wheel.name.split("-")[0])
        if name in skip:
            wheel.unlink()
    # What the node installs from the folder: pip then never looks at the node's torch (whose own CUDA dependencies
    # may be installed some other way, or not recorded at all); dlgrade itself goes in with --no-deps.
    (dest / "requirements.txt").write_text("\n".join(runtime) + "\n")
    wheels = sorted(dest.glob("*.whl"))
    size_mb = sum(w.stat().st_size for w in wheels) / 1e6
    print(f"wheelhouse {dest}: {len(wheels)} wheels, {size_mb:.1f} MB, for Python {python_version} "
          f"{args.platform}{' (torch included)' if args.with_torch else ' (no torch: the node keeps its own)'}\n"
          f"install on the node: make install-offline WHEELHOUSE={dest}   (docs/install.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Make requirements.lock install on every platform the project runs on, and check that it does.

    python -m tools.platform_lock mark requirements.txt requirements.lock   # `make lock` runs it after pip-compile
    python -m tools.platform_lock check requirements.txt requirements.lock  # `make lock-check`; CI runs it

pip-compile pins what the machine it runs on needs: on Linux x86_64 that includes torch's CUDA
libraries (nvidia-*, cuda-*, triton), which have no macOS wheels, so an unmarked lock fails there.
`mark` follows requirements.txt's dependency tree once per target platform, evaluating every
dependency's environment marker for that platform, and gives each pin the marker of the platforms
that need it. `check` verifies, per platform, that (1) the pins that apply there cover that
platform's whole dependency tree at versions the requirements accept, and (2) the package index has
a file of each such pin that installs there: a wheel with a compatible tag, or the sdist of a
pure-Python package (SDIST_ONLY).

Why not `pip install --dry-run --platform ...`: pip evaluates environment markers against the
machine it runs on, not the --platform given (so on Linux it asks for CUDA wheels for macOS), and it
downloads each wheel, several GB for the CUDA set. Here the markers are evaluated for each target,
and only the index pages are read. The dependency tree is read from the metadata of the installed
packages (`make setup` first), the same versions as the lock; a wheel's requirements are the same
for every platform of one release, with markers telling the platforms apart.
"""

import argparse
import dataclasses
import json
import os
import re
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

PYTHON_VERSION = (3, 11)  # the Python the project installs on (README: Python 3.11)
MACOS_VERSION = (14, 0)  # the oldest macOS that torch 2.14's arm64 wheel supports (macosx_14_0_arm64)
DEFAULT_INDEX_URL = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")  # pip's own setting, if any
INDEX_TIMEOUT_SECONDS = 60
INDEX_UNREACHABLE = 3  # exit status when the index cannot be read (1: the lock has problems), so CI can tell them apart
# Released only as an sdist of pure Python (checked by hand on the index): installs on any platform.
SDIST_ONLY = {"antlr4-python3-runtime"}
PIN_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)")


@dataclasses.dataclass(frozen=True)
class Platform:
    """A platform the lock must install on: its marker environment and the wheel platform tags it accepts."""

    name: str
    marker: str  # selects this platform in a requirements file
    environment: dict[str, str]
    wheel_platforms: tuple[str, ...]  # newest first, as pip ranks them

    def tags(self) -> set[Tag]:
        """Every wheel tag CPython 3.11 on this platform installs."""
        abi = f"cp{PYTHON_VERSION[0]}{PYTHON_VERSION[1]}"
        platforms = list(self.wheel_platforms)
        return {
            *cpython_tags(PYTHON_VERSION, abis=[abi], platforms=platforms),
            *compatible_tags(PYTHON_VERSION, abi, platforms=platforms),
        }


def marker_environment(sys_platform: str, platform_system: str, machine: str) -> dict[str, str]:
    """The environment-marker values of CPython 3.11 on a platform."""
    return {
        "implementation_name": "cpython",
        "implementation_version": "3.11.0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": platform_system,
        "platform_version": "",
        "python_full_version": "3.11.0",
        "python_version": "3.11",
        "sys_platform": sys_platform,
        "extra": "",
    }


def manylinux(machine: str) -> tuple[str, ...]:
    """manylinux tags a glibc 2.28 system accepts (Debian 10, Ubuntu 18.10 and newer), newest first."""
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}  # PEP 600's aliases
    tags = []
    for minor in range(28, 4, -1):
        tags.append(f"manylinux_2_{minor}_{machine}")
        if minor in legacy and (minor == 17 or machine == "x86_64"):  # 2010 and 1 exist for x86 only
            tags.append(f"{legacy[minor]}_{machine}")
    return tuple(tags)


PLATFORMS = (
    Platform(
        "linux-x86_64",
        'sys_platform == "linux" and platform_machine == "x86_64"',
        marker_environment("linux", "Linux", "x86_64"),
        manylinux("x86_64"),
    ),
    Platform(
        "linux-aarch64",
        'sys_platform == "linux" and platform_machine == "aarch64"',
        marker_environment("linux", "Linux", "aarch64"),
        manylinux("aarch64"),
    ),
    Platform(
        "macos-arm64",
        'sys_platform == "darwin" and platform_machine == "arm64"',
        marker_environment("darwin", "Darwin", "arm64"),
        tuple(mac_platforms(MACOS_VERSION, "arm64")),  # arm64 and universal2 wheels, for macOS 14 and older
    ),
)
LINUX = {"linux-x86_64", "linux-aarch64"}


def read_pins(lock: Path) -> dict[str, tuple[str, str]]:
    """canonical name -> (version, the line's marker or '') of every pin in a lock file."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = PIN_LINE.match(line)
        if match:
            marker = line.partition(";")[2].strip() if ";" in line else ""
            pins[canonicalize_name(match["name"])] = (match["version"], marker)
    return pins


def read_roots(requirements: Path) -> list[Requirement]:
    """The requirements of a requirements.txt (comments and blank lines skipped)."""
    lines = (line.split("#")[0].strip() for line in requirements.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def applies(requirement: Requirement, environment: dict[str, str], extras: set[str]) -> bool:
    """True when a requirement's marker holds on a platform for a package installed with these extras."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras | {""})


def installed_requirements(name: str) -> list[Requirement]:
    """The Requires-Dist of an installed package (the lock's version of it)."""
    try:
        return [Requirement(text) for text in metadata.distribution(name).requires or []]
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{name} is not installed: run `make setup` before this command") from None


def dependency_tree(roots: list[Requirement], platform: Platform) -> dict[str, Requirement]:
    """canonical name -> the first requirement that asks for it, over everything `roots` need on platform."""
    needed: dict[str, Requirement] = {}
    extras_of: dict[str, set[str]] = {}
    pending = [requirement for requirement in roots if applies(requirement, platform.environment, set())]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        known_extras = extras_of.setdefault(name, set())
        if name in needed and set(requirement.extras) <= known_extras:
            continue
        needed.setdefault(name, requirement)
        known_extras |= set(requirement.extras)
        pending += [
            child for child in installed_requirements(name) if applies(child, platform.environment, known_extras)
        ]
    return needed


def marker_for(platform_names: set[str]) -> str:
    """The marker that selects exactly these platforms ('' for all of them)."""
    if platform_names == {platform.name for platform in PLATFORMS}:
        return ""
    if platform_names == LINUX:
        return 'sys_platform == "linux"'
    return " or ".join(f"({platform.marker})" for platform in PLATFORMS if platform.name in platform_names)


def mark(requirements: Path, lock: Path) -> None:
    """Rewrite the lock's pin lines with the marker of the platforms that need each pin."""
    trees = {platform.name: dependency_tree(read_roots(requirements), platform) for platform in PLATFORMS}
    lines = []
    for line in lock.read_text().splitlines():
        match = PIN_LINE.match(line)
        if match:
            name = canonicalize_name(match["name"])
            needed_on = {platform for platform, tree in trees.items() if name in tree}
            if not needed_on:
                raise SystemExit(f"{match['name']} is pinned but no platform needs it: rerun `make lock`")
            marker = marker_for(needed_on)
            line = f"{match['name']}=={match['version']}" + (f" ; {marker}" if marker else "")
        lines.append(line)
    lock.write_text("\n".join(lines) + "\n")


class PackageIndex:
    """A package index's PEP 691 JSON pages, each read once."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.pages: dict[str, list[dict]] = {}

    def files(self, name: str) -> list[dict]:
        """The files the index lists for a project."""
        if name not in self.pages:
            self.pages[name] = self.read(name)
        return self.pages[name]

    def read(self, name: str) -> list[dict]:
        """Fetch one project's page."""
        request = urllib.request.Request(
            f"{self.url}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=INDEX_TIMEOUT_SECONDS) as response:
                return json.load(response)["files"]
        except (OSError, ValueError, KeyError) as error:  # unreachable, not found, not a PEP 691 page
            print(f"cannot read {request.full_url} ({error}); the check needs the package index", file=sys.stderr)
            sys.exit(INDEX_UNREACHABLE)


def installs_on(name: str, version: str, files: list[dict], tags: set[Tag]) -> bool:
    """True when the index has a file of name==version that pip would install on a platform with these tags."""
    for file in files:
        filename = file["filename"]
        if file.get("yanked"):
            continue
        if filename.endswith(".whl"):
            try:
                _, wheel_version, _, wheel_tags = parse_wheel_filename(filename)
            except InvalidWheelFilename:  # old uploads with names pip skips too
                continue
            if str(wheel_version) == version and wheel_tags & tags:
                return True
        elif name in SDIST_ONLY and filename.endswith((".tar.gz", ".zip")) and f"-{version}." in filename:
            return True
    return False


@dataclasses.dataclass(frozen=True)
class LockCheck:
    """What a check compares: the requirements, the lock's pins, and the index to install from."""

    roots: list[Requirement]
    pins: dict[str, tuple[str, str]]
    index: PackageIndex


def platform_problems(platform: Platform, lock: LockCheck) -> list[str]:
    """What would make `pip install -r lock` fail or install an incomplete environment on platform."""
    installed = {
        name: version
        for name, (version, marker) in lock.pins.items()
        if not marker or Marker(marker).evaluate(platform.environment)
    }
    problems = []
    for name, requirement in sorted(dependency_tree(lock.roots, platform).items()):
        if name not in installed:
            problems.append(f"{name} is needed ({requirement}) but not pinned for {platform.name}")
        elif not requirement.specifier.contains(installed[name], prereleases=True):
            problems.append(f"{name}=={installed[name]} does not satisfy {requirement}")
    tags = platform.tags()
    for name, version in sorted(installed.items()):
        if not installs_on(name, version, lock.index.files(name), tags):
            problems.append(f"{name}=={version} has no file on {lock.index.url} that installs on {platform.name}")
    return problems


def check(requirements: Path, lock: Path, index_url: str) -> None:
    """Print one line per platform; exit 1 naming every problem when the lock would not install somewhere."""
    lock_check = LockCheck(read_roots(requirements), read_pins(lock), PackageIndex(index_url))
    failed = False
    for platform in PLATFORMS:
        problems = platform_problems(platform, lock_check)
        failed |= bool(problems)
        print(f"{platform.name}: " + ("ok" if not problems else f"{len(problems)} problem(s)"), flush=True)
        for problem in problems:
            print(f"  {problem}", flush=True)
    if failed:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Command line: mark or check a lock against requirements.txt for every platform."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.platform_lock",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("action", choices=("mark", "check"))
    parser.add_argument("requirements", type=Path, help="the readable list, e.g. requirements.txt")
    parser.add_argument("lock", type=Path, help="the pinned list, e.g. requirements.lock")
    parser.add_argument("--index-url", default=DEFAULT_INDEX_URL, help=f"for check (default {DEFAULT_INDEX_URL})")
    arguments = parser.parse_args(argv)
    if arguments.action == "mark":
        mark(arguments.requirements, arguments.lock)
    else:
        check(arguments.requirements, arguments.lock, arguments.index_url)


if __name__ == "__main__":
    main()

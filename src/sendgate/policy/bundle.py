"""A policy directory read into memory: Rego modules, their tests, data and a revision hash."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from sendgate.policy.base import PolicyLoadError

__all__ = ["PolicyBundle", "RegoTest"]

_DATA_FILES = ("data.json", "data.yaml", "data.yml")
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)


@dataclass(frozen=True)
class RegoTest:
    package: str
    name: str
    file: str

    @property
    def path(self) -> str:
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
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if path.suffix == ".rego":
                source = _read(path)
                (tests if path.name.endswith("_test.rego") else modules)[rel] = source
            elif path.name in _DATA_FILES:
                source = _read(path)
                _merge(data, path.relative_to(root).parent.parts, _parse_data(path, source), rel)
            else:
                continue
            digest.update(rel.encode() + b"\0" + source.encode() + b"\0")
        if not modules:
            raise PolicyLoadError(f"no .rego files in {root}")
        return cls(root, modules, tests, data, "sha256:" + digest.hexdigest()[:16])

    def rego_tests(self) -> list[RegoTest]:
        """Every `test_*` rule, as `opa test` finds them (`todo_test_*` are skipped there too)."""
        found: list[RegoTest] = []
        for rel, source in self.tests.items():
            package = _PACKAGE.search(source)
            if package is None:
                raise PolicyLoadError(f"{rel}: no package declaration")
            names = dict.fromkeys(_TEST_RULE.findall(source))  # a test may have several bodies
            found.extend(RegoTest(package.group(1), name, rel) for name in names)
        return found


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

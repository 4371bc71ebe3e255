"""Package the promoter Lambda: the two packages and their runtime dependencies in one zip.

Run from anywhere with a Python that has pip (network access to the package index needed)::

    python infra/build.py            # writes infra/build/modelshelf-promoter-lambda.zip
    python infra/build.py --no-boto3 # rely on the boto3 the Lambda runtime ships

Dependencies are installed as manylinux x86_64 wheels for CPython 3.12 (the function's
runtime) with ``pip install --platform ... --only-binary=:all: --target``, so no Docker and no
compiler are involved, whatever the build machine runs.

What goes in: ``modelshelf`` and ``modelshelf_promoter`` from this checkout, and the
project's dependencies from ``pyproject.toml`` except those only the CLI or model loading
need (see ``NOT_BUNDLED``). boto3 is bundled by default although the runtime ships one: the
registry's conditional writes need ``If-Match`` / ``If-None-Match`` on ``PutObject``, and the
runtime's copy changes with the region and over time, outside our control.

Two checks guard against a zip that imports fine here and fails in Lambda: every third-party
module that the handler imports at module level (following first-party imports) must be in
the zip, and, when a ``python3.12`` is on PATH (or ``--check-python`` names one), the handler
is actually imported from the unpacked tree with that interpreter and no site-packages.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FIRST_PARTY",
    "HANDLER_MODULE",
    "NOT_BUNDLED",
    "ImportScan",
    "lambda_requirements",
    "main",
    "scan_imports",
]

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
DEFAULT_OUT = INFRA / "build" / "modelshelf-promoter-lambda.zip"

HANDLER_MODULE = "modelshelf_promoter.handler"
FIRST_PARTY: dict[str, Path] = {
    "modelshelf": ROOT / "sdk" / "modelshelf",
    "modelshelf_promoter": ROOT / "promoter" / "modelshelf_promoter",
}
NOT_BUNDLED: dict[str, str] = {
    "click": "command line only",
    "rich": "command line only (and pulls in pygments)",
    "joblib": "only Registry.load() unpickles models; the promoter never does",
}
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")

PYTHON_VERSION = "3.12"
PLATFORM = "manylinux2014_x86_64"
# Fixed entry times make two builds of the same tree byte-identical.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _dist_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"cannot read a distribution name from requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def lambda_requirements(pyproject: Path, *, bundle_boto3: bool = True) -> list[str]:
    """The project's runtime requirements that the Lambda zip needs, as pip specifiers.

    Args:
        pyproject: The project's ``pyproject.toml``.
        bundle_boto3: Keep ``boto3``; without it the runtime's own copy is used.
    """
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    wanted = []
    for requirement in project.get("dependencies", []):
        name = _dist_name(requirement)
        if name in NOT_BUNDLED or (name == "boto3" and not bundle_boto3):
            continue
        wanted.append(requirement)
    return wanted


@dataclass
class ImportScan:
    """Third-party imports reachable from the entry modules, by top-level module name."""

    eager: dict[str, list[str]] = field(default_factory=dict)
    """Imported when the entry modules are imported (module level, not under TYPE_CHECKING)."""
    lazy: dict[str, list[str]] = field(default_factory=dict)
    """Imported inside functions of the modules above: needed only if that code runs."""
    modules: list[str] = field(default_factory=list)
    """First-party modules imported eagerly, the entry modules included."""


def _module_file(module: str) -> Path | None:
    top, _, rest = module.partition(".")
    base = FIRST_PARTY.get(top)
    if base is None:
        return None
    path = base.joinpath(*rest.split(".")) if rest else base
    if path.is_dir():
        return path / "__init__.py"
    candidate = path.with_suffix(".py")
    return candidate if candidate.is_file() else None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_package: bool) -> Iterable[tuple[str, bool, int]]:
    """(absolute module, at module level?, line) for each import in ``tree``."""
    package = module if is_package else module.rpartition(".")[0]

    def absolute(node: ast.ImportFrom) -> list[str]:
        if node.level == 0:
            base = node.module or ""
        else:
            parts = package.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        # "from pkg import name" may name a submodule; both are recorded, and names that
        # are not modules simply resolve to no file.
        return [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]

    def walk(nodes: Iterable[ast.stmt], top_level: bool) -> Iterable[tuple[str, bool, int]]:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, top_level, node.lineno
            elif isinstance(node, ast.ImportFrom):
                for name in absolute(node):
                    yield name, top_level, node.lineno
            elif isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse, top_level)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(node.body, False)
            elif isinstance(node, ast.ClassDef | ast.If | ast.Try | ast.With):
                children: list[ast.stmt] = list(getattr(node, "body", []))
                children += list(getattr(node, "orelse", []))
                children += list(getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    children += handler.body
                yield from walk(children, top_level)

    yield from walk(tree.body, True)


def scan_imports(entries: Iterable[str]) -> ImportScan:
    """Follow first-party imports from ``entries`` and collect the third-party ones.

    Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so parent packages are scanned too.
    """
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    scan = ImportScan()
    pending: list[str] = []
    for entry in entries:
        parts = entry.split(".")
        pending += [".".join(parts[: i + 1]) for i in range(len(parts))]
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue
        scan.modules.append(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = f"{path.relative_to(ROOT)}"
        for name, top_level, line in _imports(tree, module, path.name == "__init__.py"):
            root = name.split(".")[0]
            if not root or root in stdlib:
                continue
            if root in FIRST_PARTY:
                if top_level:
                    parts = name.split(".")
                    pending += [".".join(parts[: i + 1]) for i in range(len(parts))]
                continue
            bucket = scan.eager if top_level else scan.lazy
            places = bucket.setdefault(root, [])
            if f"{where}:{line}" not in places:
                places.append(f"{where}:{line}")
    scan.modules.sort()
    return scan


def _present(target: Path, module: str) -> bool:
    return (
        (target / module).is_dir()
        or (target / f"{module}.py").is_file()
        or any(target.glob(f"{module}.*.so"))
    )


def _importable_modules(tree: Path, provided: Iterable[str]) -> list[str]:
    """Every first-party module whose load-time imports the zip (or the runtime) satisfies.

    That is all of them but the command line, so the smoke test also covers modules the
    handler reaches lazily (the S3 store, metrics).
    """
    found = []
    for top, base in FIRST_PARTY.items():
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [top, *rel.parts]
            if parts[-1] == "__init__":
                parts.pop()
            module = ".".join(parts)
            eager = scan_imports([module]).eager
            if all(_present(tree, name) for name in eager):
                found.append(module)
    return found


def _run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _copy_package(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))


def _write_zip(tree: Path, out: Path) -> tuple[int, int]:
    """Zip ``tree`` deterministically; returns (unpacked bytes, number of files)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    unpacked = 0
    files = sorted(p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Lambda runs the code as another user: everything must be world-readable.
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            data = path.read_bytes()
            unpacked += len(data)
            zf.writestr(info, data, compresslevel=9)
    tmp.replace(out)
    return unpacked, len(files)


def _python_version(python: str) -> str | None:
    try:
        probe = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        return None
    return probe.stdout.strip() if probe.returncode == 0 else None


def _find_check_python(explicit: str | None) -> str | None:
    """The interpreter for the smoke test: the one asked for, else a working python3.12."""
    if explicit:
        version = _python_version(explicit)
        if version != PYTHON_VERSION:
            raise SystemExit(f"--check-python {explicit} is not a working Python {PYTHON_VERSION}")
        return explicit
    found = shutil.which(f"python{PYTHON_VERSION}")
    # A version manager's shim may exist without that version being usable.
    return found if found and _python_version(found) == PYTHON_VERSION else None


def _smoke_import(python: str, tree: Path, modules: list[str]) -> None:
    # -I -S: no user or site packages, so only the zip's tree and the stdlib can satisfy
    # an import, as in Lambda (whose own boto3 is not needed for an import check).
    # -B: no __pycache__ left behind in the tree that is about to be zipped.
    code = (
        "import importlib, sys; sys.path.insert(0, sys.argv[1]); "
        "[importlib.import_module(m) for m in sys.argv[2:]]"
    )
    _run([python, "-B", "-I", "-S", "-c", code, str(tree), *modules])


def main(argv: list[str] | None = None) -> int:
    """Build the zip; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="zip to write")
    parser.add_argument(
        "--no-boto3",
        dest="bundle_boto3",
        action="store_false",
        help="leave boto3/botocore out and use the Lambda runtime's copy",
    )
    parser.add_argument(
        "--check-python",
        help=f"a Python {PYTHON_VERSION} interpreter for the import smoke test "
        f"(default: python{PYTHON_VERSION} on PATH, skipped if there is none)",
    )
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    staging = out.parent / (out.stem + ".d")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    requirements = lambda_requirements(ROOT / "pyproject.toml", bundle_boto3=args.bundle_boto3)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",  # .pyc files would be for this interpreter, not 3.12
            "--target",
            str(staging),
            "--platform",
            PLATFORM,
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--only-binary=:all:",
            *requirements,
        ]
    )
    for leftover in ("bin", "share"):  # console scripts and data files are of no use here
        shutil.rmtree(staging / leftover, ignore_errors=True)
    for name, source in FIRST_PARTY.items():
        _copy_package(source, staging / name)

    handler_exists = _module_file(HANDLER_MODULE) is not None
    entries = [HANDLER_MODULE] if handler_exists else list(FIRST_PARTY)
    if not handler_exists:
        print(
            f"warning: {HANDLER_MODULE} does not exist yet; the zip is built but the function "
            "will fail until it does",
            file=sys.stderr,
        )
    scan = scan_imports(entries)
    provided = RUNTIME_PROVIDED if not args.bundle_boto3 else ()
    missing = {
        name: where
        for name, where in scan.eager.items()
        if not _present(staging, name) and name not in provided
    }
    if missing:
        lines = [f"  {name}: imported at {', '.join(where)}" for name, where in missing.items()]
        raise SystemExit(
            "the Lambda zip lacks modules the handler imports at load time:\n"
            + "\n".join(lines)
            + "\nadd the distribution to pyproject.toml or move the import into a function"
        )
    for name, where in sorted(scan.lazy.items()):
        if not _present(staging, name) and name not in provided:
            print(f"note: {name} is not bundled; only needed by {', '.join(where)}")

    python = _find_check_python(args.check_python)
    if python:
        _smoke_import(python, staging, _importable_modules(staging, provided))
    else:
        print(f"note: no python{PYTHON_VERSION} found; import smoke test skipped")

    unpacked, count = _write_zip(staging, out)
    size = out.stat().st_size
    print(
        f"{out}: {size:,} bytes ({size / 2**20:.1f} MiB) zipped, "
        f"{unpacked / 2**20:.1f} MiB unpacked, {count} files "
        "(Lambda limits: 50 MiB zipped for direct upload, 250 MiB unpacked)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

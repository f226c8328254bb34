"""Build `rarenet.ext`: one executable file osquery can autoload.

A zipapp (PEP 441): `#!/usr/bin/env python3`, then a zip holding `__main__.py`, the
`rarenet.extension` package (under the bare `rarenet/__init__.py`) and the pure-Python
parts of its dependencies — `osquery` (only its generated Thrift code,
`osquery.extensions`) and `thrift` (without its optional C module; the pure protocol is
what the extension uses), with their licence files.
No numpy, no baseline, no tests. Entries are sorted and time-stamped to a fixed date so
the same sources give the same bytes. Mode 0755; osquery's autoloader also wants the
file owned by root and not writable by group or others (docs/extension.md).

    python -m rarenet.extension.zipapp [OUT]        # default dist/rarenet.ext
"""

from __future__ import annotations

import importlib.util
import io
import os
import stat
import sys
import zipfile
from pathlib import Path

SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = (
    "import sys\n"
    "if sys.version_info < (3, 11):\n"
    "    sys.exit('rarenet.ext needs Python 3.11 or newer (found %s)' % sys.version.split()[0])\n"
    "from rarenet.extension.main import main\n"
    "sys.exit(main())\n"
)
FIXED_TIME = (2026, 1, 1, 0, 0, 0)
# (package, files inside it to take; None = every .py file)
PACKAGES: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("rarenet", ("__init__.py",)),  # the namespace's docstring only, not the service
    ("rarenet.extension", None),
    (
        "osquery",
        tuple(
            f"extensions/{n}.py"
            for n in ("__init__", "Extension", "ExtensionManager", "constants", "ttypes")
        ),
    ),
    ("thrift", None),
)
# osquery-python's own __init__ imports its whole plugin layer (and `future`), which the
# extension never uses (extension/sdk.py replaces it): the file carries the generated
# Thrift code under a package __init__ that imports nothing (2-3 MB less resident).
OSQUERY_INIT = (
    b'"""osquery-python, trimmed by rarenet\'s extension/zipapp.py to its generated Thrift\n'
    b'code (osquery.extensions); the plugin layer is not included."""\n'
)
LICENSES = ("osquery", "thrift")


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"cannot build rarenet.ext: package {name!r} is not installed")
    return Path(spec.origin).parent


def collect() -> list[tuple[str, bytes]]:
    """(archive name, bytes) of everything the file holds, sorted."""
    files: dict[str, bytes] = {"__main__.py": MAIN.encode(), "osquery/__init__.py": OSQUERY_INIT}
    for name, only in PACKAGES:
        root = package_dir(name)
        paths = [root / p for p in only] if only else sorted(root.rglob("*.py"))
        for path in paths:
            relative = path.relative_to(root)
            if "__pycache__" in relative.parts or "tests" in relative.parts:
                continue
            files[f"{name.replace('.', '/')}/{relative.as_posix()}"] = path.read_bytes()
    for name in LICENSES:
        for dist in package_dir(name).parent.glob(f"{name}-*.dist-info"):
            for path in sorted(dist.iterdir()):
                if path.name.upper().startswith(("LICENSE", "COPYING")):
                    files[f"licenses/{name}/{path.name}"] = path.read_bytes()
    return sorted(files.items())


def build(out: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in collect():
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(SHEBANG + buffer.getvalue())
    tmp.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = build(Path(args[0] if args else "dist/rarenet.ext"))
    print(f"built {out} ({out.stat().st_size:,} bytes, mode {stat.filemode(out.stat().st_mode)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

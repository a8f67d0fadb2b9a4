"""`make package`: the deploy zip as `func azure functionapp publish` builds it, the tree minus .funcignore.

python -m devstack.package [--out .artifacts/app.zip]     prints the files and the size
"""

from __future__ import annotations

import argparse
import fnmatch
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ignore_patterns(root: Path = ROOT) -> list[str]:
    lines = (root / ".funcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def _ignored(relative: Path, patterns: list[str]) -> bool:
    """gitignore-style, as .funcignore is read: a pattern names a file or folder at any depth."""
    text = relative.as_posix()
    return any(
        fnmatch.fnmatch(text, p) or any(fnmatch.fnmatch(part, p) for part in relative.parts) for p in patterns
    )


def package_files(root: Path = ROOT) -> Iterator[Path]:
    """Every file a publish would upload, relative to the root, in a stable order."""
    patterns = ignore_patterns(root)
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not _ignored(relative, patterns):
            yield relative


def build(out: Path, root: Path = ROOT) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    files = list(package_files(root))
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            archive.write(root / relative, relative.as_posix())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.package", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".artifacts" / "app.zip")
    args = parser.parse_args(argv)
    files = build(args.out)
    size = sum((ROOT / f).stat().st_size for f in files)
    tops = sorted({f.parts[0] for f in files})
    print(f"{args.out}: {len(files)} files, {size / 1024:.0f} KiB before dependencies ({', '.join(tops)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Stage a Spin app for deploy/oci/Dockerfile: copy its manifest and component files into one directory.

    python3 deploy/oci/stage.py MANIFEST OUT_DIR [--allow-missing]

The image keeps the manifest at /spin.toml, so each component's `source` is rewritten to
`target/composed/<file name>` and the file copied to OUT_DIR/target/composed/. That keeps a root manifest
(`target/composed/order-app.wasm`) as it is and turns `../../target/composed/order-app-mqtt.wasm` of the
networked apps into the same form, without relying on `..` resolving inside the image. Only local `source`
files are supported (no `files`, no remote `source = { url = ... }`): the apps here need nothing else.
--allow-missing stages the manifest even when a .wasm is not built yet (the offline check uses it).
Needs only the Python standard library (tomllib, Python 3.11+, is used when present for a final check).
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

SOURCE_LINE = re.compile(r'^(\s*source\s*=\s*)(["\'])([^"\']+)\2(\s*(#.*)?)$')
IMAGE_DIR = "target/composed"


def stage(manifest: Path, out: Path, allow_missing: bool = False) -> list[str]:
    """Write OUT/spin.toml and OUT/target/composed/*; return the in-image source paths."""
    text = manifest.read_text()
    if re.search(r"^\s*files\s*=", text, re.MULTILINE):
        raise SystemExit(f"{manifest}: components with `files` are not supported by this packaging")
    if re.search(r"^\s*source\s*=\s*\{", text, re.MULTILINE):
        raise SystemExit(f"{manifest}: remote component sources are not supported by this packaging")
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    staged: list[str] = []
    lines = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        match = SOURCE_LINE.match(body)
        if match:
            original = match.group(3)
            src = (manifest.parent / original).resolve()
            name = src.name
            if src.is_file():
                shutil.copyfile(src, out / IMAGE_DIR / name)
            elif not allow_missing:
                raise SystemExit(f"{manifest}: component source {original} ({src}) does not exist; "
                                 "run `cargo xtask build` first")
            new = f"{IMAGE_DIR}/{name}"
            staged.append(new)
            line = f"{match.group(1)}\"{new}\"{match.group(4) or ''}" + line[len(body):]
        lines.append(line)
    if not staged:
        raise SystemExit(f"{manifest}: no component `source = \"...\"` line found")
    (out / "spin.toml").write_text("".join(lines))
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the regex rewrite above is all we do
        return staged
    doc = tomllib.loads((out / "spin.toml").read_text())
    sources = sorted(c.get("source") for c in doc.get("component", {}).values())
    if sources != sorted(staged):
        raise SystemExit(f"{manifest}: staged sources {sources} differ from the rewritten lines {staged}")
    return staged


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if a != "--allow-missing"]
    if len(args) != 2:
        print(f"usage: {argv[0]} MANIFEST OUT_DIR [--allow-missing]", file=sys.stderr)
        return 2
    manifest, out = Path(args[0]), Path(args[1])
    if out.exists():
        shutil.rmtree(out)
    for path in stage(manifest, out, "--allow-missing" in argv):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

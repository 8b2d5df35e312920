#!/usr/bin/env bash
# Copies the explorer page's charting library (uPlot, pinned in web/package.json and
# web/package-lock.json) from the npm package into pipeline/serve/static/vendor/uplot/,
# with its license, and records what was copied (version, npm integrity, sha256 of each
# file) in VENDORED.json, which tests/serve/test_vendored.py checks.
#
# To update: change the version in web/package.json, run `npm install` in web/ (it
# rewrites the lock file), then this script, and commit web/ and the vendor folder.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
SRC=web/node_modules/uplot
DEST=pipeline/serve/static/vendor/uplot
mkdir -p "$DEST"
for file in dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE; do
  cp "$SRC/$file" "$DEST/$(basename "$file")"
done
python3 - "$SRC" "$DEST" <<'PY'
import hashlib, json, sys
from pathlib import Path

src, dest = Path(sys.argv[1]), Path(sys.argv[2])
package = json.loads((src / "package.json").read_text())
lock = json.loads(Path("web/package-lock.json").read_text())["packages"]["node_modules/uplot"]
files = {
    p.name: hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(dest.iterdir())
    if p.name != "VENDORED.json"
}
record = {
    "package": package["name"],
    "version": package["version"],
    "license": package["license"],
    "integrity": lock["integrity"],
    "from": {"uPlot.iife.min.js": "dist/uPlot.iife.min.js", "uPlot.min.css": "dist/uPlot.min.css", "LICENSE": "LICENSE"},
    "sha256": files,
}
(dest / "VENDORED.json").write_text(json.dumps(record, indent=2) + "\n")
print(f"vendored {package['name']} {package['version']} into {dest}")
PY

#!/usr/bin/env bash
# mypy --strict over the namespaced packages. The repo maps folders to import names
# (server/ -> seamcut.server), which mypy cannot follow, so check a tree of links.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=build/typecheck/seamcut
rm -rf build/typecheck && mkdir -p "$tree"
ln -s "$root/seamcut/__init__.py" "$root/seamcut/cli.py" "$tree/"
ln -s "$root/seamcut/v1" "$tree/v1"
for pkg in server client bench; do ln -s "$root/$pkg" "$tree/$pkg"; done
cd build/typecheck
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p seamcut.server -p seamcut.client -p seamcut.bench -m seamcut.cli

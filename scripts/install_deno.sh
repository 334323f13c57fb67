#!/usr/bin/env bash
# Installs Deno from the npm registry when it is missing or another version.
set -euo pipefail
DENO_VERSION=2.9.6
if command -v deno >/dev/null 2>&1 && deno --version | grep -q "^deno ${DENO_VERSION} "; then
  exit 0
fi
echo "Installing deno ${DENO_VERSION} from npm..." >&2
npm install --global --no-fund --no-audit "deno@${DENO_VERSION}" >&2
deno --version >&2

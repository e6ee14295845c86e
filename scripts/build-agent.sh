#!/usr/bin/env bash
# Bundles the deploy agent into one file for the ramdisk: `node agent.js`.
# Usage: scripts/build-agent.sh [OUTFILE]   (default dist/agent.js)
# esbuild strips the TypeScript types (the sources run unbundled on Node's
# type stripping too) and inlines every dependency: grpc-js, protobuf-es and
# the generated descriptors. The ramdisk's Node is the same major version as
# the project's, hence --target=node24. CommonJS output runs as `node agent.js`
# from any directory, with or without a package.json beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist/agent.js}"
mkdir -p "$(dirname "$out")"
exec node_modules/.bin/esbuild agent/main.ts \
  --bundle \
  --platform=node \
  --target=node24 \
  --format=cjs \
  --minify-syntax \
  --legal-comments=none \
  --log-level=warning \
  --outfile="$out"

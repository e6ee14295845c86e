#!/usr/bin/env bash
# The main job on one machine: set up, then `bmctl lab up`: a controller and
# virtual machines with virtual BMCs in the background, enrolled, cleaned and
# deployed through bmctl, with bmctl left pointed at them. Options go to
# `bmctl lab up` (e.g. --nodes 8); --once also shows the lab and takes it
# down again (`bmctl lab down`), as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
once=0
args=()
for arg in "$@"; do
  if [ "$arg" = --once ]; then once=1; else args+=("$arg"); fi
done
if [ "$once" = 0 ]; then
  exec bin/bmctl lab up "${args[@]}"
fi
# lab up stops a lab that did not come up; one that did goes down however this script ends.
trap 'bin/bmctl lab down' EXIT
bin/bmctl lab up "${args[@]}"
bin/bmctl instance list

#!/usr/bin/env bash
# Makes the built deploy ramdisk (npm run build:ramdisk) the controller's
# default: uploads ramdisk/out/vmlinuz and ramdisk/out/initrd with bmctl as
# the aki/ari images named deploy-kernel and deploy-ramdisk, replacing
# earlier uploads of those names. bm.toml's [boot] names them once:
#   deploy_kernel = "deploy-kernel"
#   deploy_ramdisk = "deploy-ramdisk"
# Usage: BM_URL=... BM_TOKEN=... scripts/install-ramdisk.sh [KERNEL_NAME RAMDISK_NAME]
# Between the delete and the new upload (seconds) a machine that PXE boots
# finds no deploy kernel and retries after 10 s (the iPXE script's retry).
set -euo pipefail
cd "$(dirname "$0")/.."
kernel_name=${1:-deploy-kernel}
ramdisk_name=${2:-deploy-ramdisk}
for f in ramdisk/out/vmlinuz ramdisk/out/initrd; do
  [ -f "$f" ] || { echo "install-ramdisk: $f is missing: run npm run build:ramdisk first" >&2; exit 1; }
done
upload() { # file name format
  if bin/bmctl image show "$2" >/dev/null 2>&1; then bin/bmctl image delete "$2" >/dev/null; fi
  bin/bmctl image create "$1" --name "$2" --disk-format "$3"
}
upload ramdisk/out/vmlinuz "$kernel_name" aki
upload ramdisk/out/initrd "$ramdisk_name" ari

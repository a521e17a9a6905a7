#!/usr/bin/env bash
# A throw-away one-host Ceph cluster for the plugin's tests: one mon, one
# bluestore OSD on a sparse file (so stopping and restarting the OSD keeps
# the data, which the outage test relies on), optionally one mgr.  No
# radosgw, no systemd; every daemon runs with an explicit ceph.conf and
# writes its PID to $CEPH_WORK/run/<name>.pid.  Adapted from
# shared/tools/ceph-single-node-start.sh.
#
# Usage: ceph_cluster.sh start | stop | start-osd | stop-osd
# Env:   CEPH_WORK   state directory (required; keep it short: admin
#                    sockets live under it and unix socket paths are <108 bytes)
#        MON_PORT    the mon's v2 port; v1 is MON_PORT+1 (required for start)
#        WITH_MGR    1 to start a ceph-mgr too (default 0: the tests need none)
#        OSD_SIZE_GB sparse bluestore file size (default 8)
set -Eeuo pipefail

W=${CEPH_WORK:?CEPH_WORK must be set}
WITH_MGR=${WITH_MGR:-0}
OSD_SIZE_GB=${OSD_SIZE_GB:-8}
export CEPH_CONF=$W/ceph.conf

log() { printf '[ceph_cluster %s] %s\n' "$(date +%T)" "$*"; }
# The daemons log to files only (log to stderr = false) and some exit without a word
# on stderr (a mon refusing a nearly full disk exits 28, ENOSPC), so a failing step says which
# it was and shows the logs' last lines and the free space.
on_error() {
  local rc=$? line=$1 cmd=$2 f
  trap - ERR
  {
    log "ERROR: line $line exited $rc: $cmd"
    df -h "$W" 2>/dev/null || true
    for f in "$W"/log/*.log; do
      [ -s "$f" ] || continue
      echo "--- last lines of $f"
      tail -15 "$f"
    done
  } >&2
  exit "$rc"
}
trap 'on_error $LINENO "$BASH_COMMAND"' ERR
die() { log "ERROR: $*"; exit 1; }
cph() { timeout 30 ceph --connect-timeout 20 "$@"; }
pid_alive() {  # pid_alive <pidfile> <binary-name>
  local f=$1 bin=$2 pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$bin"
}
wait_for() {  # wait_for <seconds> <description> <command...>
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${secs}s waiting for $what"
    sleep 0.5
  done
}
stop_one() {  # stop_one <name> <binary>: SIGTERM by recorded PID, SIGKILL after 30 s
  local name=$1 bin=$2 f="$W/run/$1.pid" pid
  pid_alive "$f" "$bin" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
  [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}
osd_up() { cph osd stat -f json | grep -q '"num_up_osds":1'; }
osd_down() { cph osd stat -f json | grep -q '"num_up_osds":0'; }

start_osd() {
  pid_alive "$W/run/osd.0.pid" ceph-osd || ceph-osd -i 0
  wait_for 120 "osd.0 up" osd_up
}

start() {
  local port=${MON_PORT:?MON_PORT must be set for start}
  for b in ceph-mon ceph-osd ceph ceph-authtool monmaptool uuidgen; do
    command -v "$b" >/dev/null 2>&1 || die "$b is not installed (apt-get install ceph-mon ceph-osd ceph-common uuid-runtime)"
  done
  mkdir -p "$W/data" "$W/run" "$W/log"
  if [ ! -s "$W/ceph.conf" ]; then
    cat > "$W/ceph.conf" <<CONF
[global]
        fsid = $(uuidgen)
        mon host = [v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]
        mon initial members = a
        public network = 127.0.0.0/8
        cluster network = 127.0.0.0/8
        ms bind ipv4 = true
        ms bind ipv6 = false
        auth cluster required = cephx
        auth service required = cephx
        auth client required = cephx
        run dir = $W/run
        log file = $W/log/\$name.log
        log to stderr = false
        mon cluster log file = $W/log/cluster.log
        osd pool default size = 1
        osd pool default min size = 1
        osd pool default pg num = 8
        osd pool default pgp num = 8
        osd pool default pg autoscale mode = off
        osd crush chooseleaf type = 0
        mon allow pool size one = true
        mon allow pool delete = true
        mon max pg per osd = 1000
        mon warn on pool no redundancy = false
        mon warn on insecure global id reclaim = false
        mon warn on insecure global id reclaim allowed = false
        # No free-space floor for the mon: the default (5 %) is GiBs on a big shared disk,
        # and 0 still refuses below 1 %; this cluster needs a few MiB.
        mon data avail warn = -1
        mon data avail crit = -1
        osd failsafe full ratio = .99
        mon osd full ratio = .98
        mon osd nearfull ratio = .95
        mon osd backfillfull ratio = .96
[client]
        keyring = $W/keyring
[mon]
        mon data = $W/data/mon.\$id
        pid file = $W/run/\$name.pid
        admin socket = $W/run/\$name.asok
[mgr]
        mgr data = $W/data/mgr.\$id
        pid file = $W/run/\$name.pid
        admin socket = $W/run/\$name.asok
        public addr = 127.0.0.1
[osd]
        osd data = $W/data/osd.\$id
        pid file = $W/run/\$name.pid
        admin socket = $W/run/\$name.asok
        public addr = 127.0.0.1
        cluster addr = 127.0.0.1
        osd objectstore = bluestore
        bluestore block create = true
        bluestore block size = $(( OSD_SIZE_GB * 1024 * 1024 * 1024 ))
        bluestore block db create = false
        bluestore block wal create = false
        bluestore fsck on mount = false
        osd memory target = 1073741824
CONF
  fi
  if [ ! -s "$W/keyring" ]; then
    mkdir -p "$W/data/mgr.x"
    ceph-authtool --create-keyring "$W/data/mon-bootstrap.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$W/keyring.tmp" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool --create-keyring "$W/data/mgr.x/keyring" --gen-key -n mgr.x \
        --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$W/data/mon-bootstrap.keyring" --import-keyring "$W/keyring.tmp" >/dev/null
    ceph-authtool "$W/data/mon-bootstrap.keyring" --import-keyring "$W/data/mgr.x/keyring" >/dev/null
    mv "$W/keyring.tmp" "$W/keyring"
  fi
  if [ ! -e "$W/data/mon.a/.mkfs_done" ]; then
    rm -rf "$W/data/mon.a"; mkdir -p "$W/data/mon.a"
    monmaptool --create --clobber --fsid "$(ceph-conf --lookup fsid)" \
        --addv a "[v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]" "$W/data/monmap" >/dev/null
    ceph-mon --mkfs -i a --monmap "$W/data/monmap" --keyring "$W/data/mon-bootstrap.keyring"
    touch "$W/data/mon.a/.mkfs_done"
  fi
  pid_alive "$W/run/mon.a.pid" ceph-mon || ceph-mon -i a
  wait_for 60 "monitor quorum" cph mon stat
  if [ ! -e "$W/data/osd.0/.mkfs_done" ]; then
    rm -rf "$W/data/osd.0"; mkdir -p "$W/data/osd.0"
    local uuid key id
    uuid=$(uuidgen); key=$(ceph-authtool --gen-print-key)
    printf '{"cephx_secret": "%s"}\n' "$key" > "$W/data/osd-new.json"
    id=$(cph osd new "$uuid" -i "$W/data/osd-new.json")
    rm -f "$W/data/osd-new.json"
    [ "$id" = 0 ] || die "expected osd id 0, got '$id'"
    printf '[osd.0]\n\tkey = %s\n' "$key" > "$W/data/osd.0/keyring"
    ceph-osd -i 0 --mkfs --key "$key" --osd-uuid "$uuid" > "$W/log/osd.0.mkfs.log" 2>&1 \
        || { tail -20 "$W/log/osd.0.mkfs.log"; die "ceph-osd --mkfs failed"; }
    touch "$W/data/osd.0/.mkfs_done"
  fi
  start_osd
  if [ "$WITH_MGR" = 1 ]; then pid_alive "$W/run/mgr.x.pid" ceph-mgr || ceph-mgr -i x; fi
  log "cluster up: CEPH_CONF=$W/ceph.conf"
}

case "${1:-}" in
  start) start ;;
  stop) stop_one mgr.x ceph-mgr; stop_one osd.0 ceph-osd; stop_one mon.a ceph-mon ;;
  start-osd) start_osd ;;
  # Marks the OSD down at once (a SIGTERMed OSD tells the mon) so clients
  # see an unavailable PG rather than waiting for a heartbeat grace period.
  stop-osd) stop_one osd.0 ceph-osd; wait_for 60 "osd.0 down" osd_down ;;
  *) echo "usage: $0 start|stop|start-osd|stop-osd" >&2; exit 2 ;;
esac

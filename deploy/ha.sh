#!/usr/bin/env bash
# A PostgreSQL failover formation on loopback, from Debian's pg_auto_failover packages: a
# monitor and two nodes in synchronous replication, the primary's database `taskapi` reached
# through one multi-host URL. Run by `make ha` (tests/ha).
#
#   deploy/ha.sh start   # prints the URL; the details a test needs are in $HA_DIR/env
#   deploy/ha.sh stop    # stops what start started and removes its folder
#
# HA_DIR   where data, configs, logs and pid files go (default: $TMPDIR/taskapi-ha)
# HA_PORT  the monitor's port; the two nodes take the next two (9350)
#
# pg_autoctl and initdb refuse to run as root: as root, they run as the `postgres` user (and
# the packages are installed if missing); otherwise as the current user, who must be able to
# write in /var/run/postgresql (Debian's socket folder: its group may).
set -euo pipefail

dir=${HA_DIR:-${TMPDIR:-/tmp}/taskapi-ha}
port=${HA_PORT:-9350}
pg_version=15 # Debian 12's PostgreSQL, which postgresql-15-auto-failover extends
pg_ctl=/usr/lib/postgresql/$pg_version/bin/pg_ctl
monitor_port=$port
node_ports=($((port + 1)) $((port + 2)))
monitor_url="postgresql://autoctl_node@127.0.0.1:$monitor_port/pg_auto_failover?sslmode=disable"

die() {
    echo "ha: $*" >&2
    exit 1
}

start() {
    [ ! -e "$dir/env" ] || die "already running from $dir; run '$0 stop' first"
    install_packages
    [ "$(id -u)" -eq 0 ] || [ -w /var/run/postgresql ] ||
        die "Postgres writes its socket in /var/run/postgresql: run as root, or join its group"
    for p in "$monitor_port" "${node_ports[@]}"; do
        ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || die "port $p is in use"
    done
    mkdir -p "$dir/run" # pg_autoctl's pid files, where XDG_RUNTIME_DIR says (if it exists)
    [ "$(id -u)" -ne 0 ] || chown -R postgres: "$dir"
    trap 'failed $?' EXIT

    create_monitor
    run monitor
    create_node node1 "${node_ports[0]}"
    run node1
    create_node node2 "${node_ports[1]}" # a base backup of node1, so node1 runs first
    run node2
    wait_for_formation
    local url
    url=$(database_url "127.0.0.1:${node_ports[0]},127.0.0.1:${node_ports[1]}")
    cat >"$dir/env" <<EOF
HA_DATABASE_URL=$url?target_session_attrs=read-write&connect_timeout=2
HA_NODE1_URL=$(database_url "127.0.0.1:${node_ports[0]}")
HA_NODE2_URL=$(database_url "127.0.0.1:${node_ports[1]}")
HA_NODE1_PID=$(get_pid node1)
HA_NODE2_PID=$(get_pid node2)
HA_MONITOR_URL=$monitor_url
EOF
    trap - EXIT
    echo "PostgreSQL formation up: $url (details: $dir/env)"
}

failed() {
    [ "$1" -eq 0 ] && return
    echo "ha: start failed; stopping what it started. Its logs:" >&2
    tail -n 20 "$dir"/*.log >&2 2>/dev/null || true
    stop
}

install_packages() {
    command -v pg_autoctl >/dev/null && [ -x "$pg_ctl" ] &&
        [ -e "/usr/lib/postgresql/$pg_version/lib/pgautofailover.so" ] && return
    local packages="postgresql-$pg_version-auto-failover pg-auto-failover-cli"
    [ "$(id -u)" -eq 0 ] || die "needs pg_auto_failover: sudo apt-get install -y $packages"
    apt-get update -qq
    # shellcheck disable=SC2086 # two package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
        $packages >/dev/null
}

# pg_autoctl with its configuration, state and pid files in $dir rather than in the home
# folder (XDG_*), as the postgres user when root.
autoctl() {
    local as_user=()
    [ "$(id -u)" -ne 0 ] || as_user=(runuser -u postgres --)
    "${as_user[@]}" env XDG_CONFIG_HOME="$dir/config" XDG_DATA_HOME="$dir/data" \
        XDG_RUNTIME_DIR="$dir/run" pg_autoctl "$@"
}

# On loopback, for a test: no TLS and trust authentication (in production, --ssl-self-signed or
# your own certificates and --auth scram-sha-256 with a .pgpass; see the README).
create_monitor() {
    autoctl create monitor --pgctl "$pg_ctl" --pgdata "$dir/monitor" --pgport "$monitor_port" \
        --hostname 127.0.0.1 --auth trust --no-ssl >"$dir/create-monitor.log" 2>&1
    autoctl config set --pgdata "$dir/monitor" postgresql.listen_addresses 127.0.0.1 >/dev/null
    small_instance "$dir/monitor"
    # A failover in seconds rather than a minute: the monitor checks each node every second and
    # calls a node unhealthy 2 s after its last report; it waits 2 s (not 30) for a primary it
    # cannot reach to stop itself before promoting the standby. That is safe with synchronous
    # replication: a primary cut off from its standby cannot acknowledge a commit. And it does
    # not refuse a failover in its own first 10 s, which a test reaches.
    cat >>"$dir/monitor/postgresql.conf" <<EOF
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500
pgautofailover.node_considered_unhealthy_timeout = 2000
pgautofailover.primary_demote_timeout = 2000
pgautofailover.startup_grace_period = 1000
EOF
}

# Every acknowledged commit is on both nodes: replication-quorum (synchronous_standby_names
# lists the standby), with the formation's number-sync-standbys at 0, the only value two
# nodes allow. If the standby fails, the primary goes on alone (wait_primary).
create_node() {
    local name=$1 node_port=$2
    autoctl create postgres --pgctl "$pg_ctl" --pgdata "$dir/$name" --pgport "$node_port" \
        --listen 127.0.0.1 --hostname 127.0.0.1 --name "$name" --dbname taskapi \
        --monitor "$monitor_url" --auth trust --no-ssl --replication-quorum true \
        >"$dir/create-$name.log" 2>&1
    small_instance "$dir/$name"
}

# pg_autoctl sizes Postgres for the whole machine (a quarter of its memory as shared buffers);
# three instances of a test need little. The last setting in postgresql.conf wins.
small_instance() {
    printf "shared_buffers = '32MB'\neffective_cache_size = '256MB'\nmaintenance_work_mem = '64MB'\n" \
        >>"$1/postgresql.conf"
}

run() {
    autoctl run --pgdata "$dir/$1" </dev/null >"$dir/$1.log" 2>&1 &
    for _ in $(seq 100); do
        [ -n "$(get_pid "$1")" ] && return
        sleep 0.1
    done
    die "pg_autoctl did not start for $1; see $dir/$1.log"
}

# The pid of this node's `pg_autoctl run`, the parent of its Postgres: its pid file's first line.
get_pid() {
    head -n 1 "$dir/run/pg_autoctl$dir/$1/pg_autoctl.pid" 2>/dev/null || true
}

wait_for_formation() {
    local states=""
    for _ in $(seq 120); do
        states=$(psql "postgresql://postgres@127.0.0.1:$monitor_port/pg_auto_failover" -At \
            -c "SELECT string_agg(reportedstate || '/' || goalstate, ' ' ORDER BY nodeid)
                FROM pgautofailover.node" 2>/dev/null) || true
        [ "$states" = "primary/primary secondary/secondary" ] && return
        sleep 0.5
    done
    die "the formation did not reach primary and secondary (states: '$states'); see $dir/*.log"
}

database_url() {
    echo "postgresql://postgres@$1/taskapi"
}

stop() {
    for name in node2 node1 monitor; do
        end "$name" &
    done
    wait
    rm -rf "$dir"
}

# Stops a node's pg_autoctl (which stops its Postgres), if it is still running from $dir.
end() {
    local pid
    pid=$(get_pid "$1")
    if [ -z "$pid" ] || ! running "$pid"; then
        return 0
    fi
    kill "$pid"
    for _ in $(seq 100); do
        running "$pid" || return 0
        sleep 0.1
    done
    kill -9 "$pid"
    pid=$(head -n 1 "$dir/$1/postmaster.pid" 2>/dev/null) || return 0
    ! running "$pid" || kill -9 "$pid"
}

running() {
    { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qF -- "$dir/"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop" ;;
esac

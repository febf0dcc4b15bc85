#!/usr/bin/env bash
# The production topology on loopback, from deploy/nginx.conf and deploy/pgbouncer.ini:
# nginx (TLS) -> 2 waitress processes -> PgBouncer -> PostgreSQL, as the current user.
#
#   deploy/topology.sh start   # prints the URL; the details a client needs are in $TOPOLOGY_DIR/env
#   deploy/topology.sh stop    # stops what start started and drops its database
#
# TOPOLOGY_DIR   where configs, logs and pid files go (default: $TMPDIR/taskapi-topology)
# TOPOLOGY_PORT  nginx's http port; https, waitress 1 and 2 and PgBouncer take the next four (9340)
# TOPOLOGY_POSTGRES_URL  a server where this user may create databases (default: TEST_POSTGRES_URL,
#                or the local server); start creates a fresh database there, stop drops it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${TOPOLOGY_DIR:-${TMPDIR:-/tmp}/taskapi-topology}
port=${TOPOLOGY_PORT:-9340}
admin_url=${TOPOLOGY_POSTGRES_URL:-${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}}
http_port=$port
https_port=$((port + 1))
web_ports=($((port + 2)) $((port + 3)))
pgbouncer_port=$((port + 4))
python=$root/.venv/bin/python
PATH=$PATH:/usr/sbin # nginx and pgbouncer, for users whose PATH lacks it
umask 077            # the env file and the userlist hold a password

die() {
    echo "topology: $*" >&2
    exit 1
}

start() {
    [ ! -e "$dir/env" ] || die "already running from $dir; run '$0 stop' first"
    install_packages
    make -C "$root" --quiet --no-print-directory install
    for p in "$http_port" "$https_port" "${web_ports[@]}" "$pgbouncer_port"; do
        ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || die "port $p is in use"
    done
    mkdir -p "$dir/nginx/tmp" "$dir/pgbouncer"
    # PgBouncer refuses to run as root: then it runs as nobody, who must reach its folder.
    chmod 711 "$dir"
    trap 'failed $?' EXIT

    start_database
    start_pgbouncer
    local secret
    secret=$("$python" -c 'import secrets; print(secrets.token_urlsafe(48))')
    DATABASE_URL=$database_url BETTER_AUTH_SECRET=$secret "$root/.venv/bin/flask" --app taskapi init-db
    for i in 0 1; do
        start_waitress "${web_ports[$i]}" "$secret"
    done
    start_nginx
    for url in "http://127.0.0.1:${web_ports[0]}" "http://127.0.0.1:${web_ports[1]}" \
        "https://127.0.0.1:$https_port"; do
        wait_for "$url/health"
    done
    cat >"$dir/env" <<EOF
TOPOLOGY_URL=https://127.0.0.1:$https_port
TOPOLOGY_HTTP_URL=http://127.0.0.1:$http_port
TOPOLOGY_CA=$dir/tls.crt
TOPOLOGY_DATABASE_URL=$database_url
TOPOLOGY_DIRECT_URL=$direct_url
TOPOLOGY_ACCESS_LOG=$dir/nginx/access.log
TOPOLOGY_WAITRESS_PIDS=$(worker_pids)
EOF
    trap - EXIT
    echo "taskapi is up at https://127.0.0.1:$https_port (CA: $dir/tls.crt; details: $dir/env)"
}

failed() {
    [ "$1" -eq 0 ] && return
    echo "topology: start failed; stopping what it started. Its logs:" >&2
    tail -n 5 "$dir"/*.log "$dir"/*/*.log >&2 2>/dev/null || true
    stop
}

install_packages() {
    command -v nginx >/dev/null && command -v pgbouncer >/dev/null && command -v openssl >/dev/null &&
        return
    [ "$(id -u)" -eq 0 ] || die "needs nginx, pgbouncer and openssl: sudo apt-get install -y nginx pgbouncer openssl"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx pgbouncer openssl >/dev/null
}

# A fresh database whose default time zone is not UTC, as on a server kept in local time: the
# time stamps must come out right anyway (see deploy/pgbouncer.ini).
start_database() {
    local name="taskapi_topology_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    psql "$admin_url" --quiet -v ON_ERROR_STOP=1 -c "CREATE DATABASE $name" \
        -c "ALTER DATABASE $name SET timezone = 'Asia/Kathmandu'"
    echo "$name" >"$dir/database"
    read -r db_host db_port db_user db_password < <("$python" -c 'import sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
print(url.hostname or "127.0.0.1", url.port or 5432, url.username or "postgres", url.password or "-")' \
        "$admin_url")
    # PgBouncer logs in to PostgreSQL with the userlist's password: the real one, if there is one.
    [ "$db_password" != "-" ] || db_password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    database_url="postgresql://$db_user:$db_password@127.0.0.1:$pgbouncer_port/taskapi"
    direct_url="postgresql://$db_user:$db_password@$db_host:$db_port/$name"
}

start_pgbouncer() {
    local conf=$dir/pgbouncer
    sed -E -e "s/^taskapi = host=\S+ port=\S+ dbname=taskapi( |$)/taskapi = host=$db_host port=$db_port dbname=$(cat "$dir/database")\1/" \
        -e "s|^listen_port = .*|listen_port = $pgbouncer_port|" \
        -e "s|^auth_file = .*|auth_file = $conf/userlist.txt|" \
        -e "s|^logfile = .*|logfile = $conf/pgbouncer.log|" \
        -e "s|^pidfile = .*|pidfile = $conf/pgbouncer.pid|" \
        "$root/deploy/pgbouncer.ini" >"$conf/pgbouncer.ini"
    ! grep -v '^;' "$conf/pgbouncer.ini" | grep -E 'dbname=taskapi( |$)|6432|/etc/|/var/' ||
        die "deploy/pgbouncer.ini changed shape: update the rewrites in $0"
    printf '"%s" "%s"\n' "$db_user" "$db_password" >"$conf/userlist.txt"
    chmod 600 "$conf/userlist.txt"
    local as_user=()
    if [ "$(id -u)" -eq 0 ]; then
        chown -R nobody "$conf"
        as_user=(-u nobody)
    fi
    pgbouncer -d "${as_user[@]}" "$conf/pgbouncer.ini" </dev/null >"$dir/pgbouncer-start.log" 2>&1
    for _ in $(seq 50); do
        pg_isready --quiet --host 127.0.0.1 --port "$pgbouncer_port" && return
        sleep 0.1
    done
    die "PgBouncer did not start; see $conf/pgbouncer.log"
}

start_waitress() {
    local port=$1 secret=$2
    # As production runs it (wsgi.py, one worker here: nginx spreads over the two), believing
    # X-Forwarded-For from nginx's address only. wsgi.py loads .env, but never over these.
    (cd "$root" && DATABASE_URL=$database_url BETTER_AUTH_SECRET=$secret \
        TRUSTED_PROXIES=127.0.0.1 exec "$python" wsgi.py --listen="127.0.0.1:$port" --workers=1 \
        --threads=8 >"$dir/waitress-$port.log" 2>&1) &
    echo $! >"$dir/waitress-$port.pid"
}

# The worker processes (wsgi.py's children), which serve the requests.
worker_pids() {
    for p in "${web_ports[@]}"; do
        cat "/proc/$(cat "$dir/waitress-$p.pid")/task/$(cat "$dir/waitress-$p.pid")/children"
    done | xargs
}

start_nginx() {
    local conf=$dir/nginx
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
    sed -e "s|^    listen 80;|    listen 127.0.0.1:$http_port;|" \
        -e "s|^    listen 443 ssl;|    listen 127.0.0.1:$https_port ssl;|" \
        -e "s|server 127.0.0.1:8001 |server 127.0.0.1:${web_ports[0]} |" \
        -e "s|server 127.0.0.1:8002 |server 127.0.0.1:${web_ports[1]} |" \
        -e "s|ssl_certificate .*|ssl_certificate $dir/tls.crt;|" \
        -e "s|ssl_certificate_key .*|ssl_certificate_key $dir/tls.key;|" \
        -e "s|access_log .* taskapi;|access_log $conf/access.log taskapi;|" \
        "$root/deploy/nginx.conf" >"$conf/taskapi.conf"
    ! grep -v '^ *#' "$conf/taskapi.conf" | grep -E 'listen (80|443)|:800[12] |/etc/|/var/' ||
        die "deploy/nginx.conf changed shape: update the rewrites in $0"
    # Debian's nginx keeps its logs and temp folders under /var whatever the prefix: move them.
    cat >"$conf/nginx.conf" <<EOF
$([ "$(id -u)" -ne 0 ] || echo "user root;")
worker_processes 1;
pid $conf/nginx.pid;
error_log $conf/error.log;
events { worker_connections 512; }
http {
    access_log off;  # the site file has its own
    client_body_temp_path $conf/tmp/body;
    proxy_temp_path $conf/tmp/proxy;
    fastcgi_temp_path $conf/tmp/fastcgi;
    uwsgi_temp_path $conf/tmp/uwsgi;
    scgi_temp_path $conf/tmp/scgi;
    include $conf/taskapi.conf;
}
EOF
    nginx -e "$conf/error.log" -p "$conf" -c "$conf/nginx.conf" </dev/null >>"$conf/error.log" 2>&1
}

wait_for() {
    for _ in $(seq 100); do
        curl --silent --fail --cacert "$dir/tls.crt" --output /dev/null "$1" && return
        sleep 0.1
    done
    die "no answer from $1; see the logs in $dir"
}

stop() {
    end "$dir/nginx/nginx.pid" "$dir/nginx"
    for p in "${web_ports[@]}"; do
        end "$dir/waitress-$p.pid" "--listen=127.0.0.1:$p"
    done
    end "$dir/pgbouncer/pgbouncer.pid" "$dir/pgbouncer"
    if [ -e "$dir/database" ]; then
        psql "$admin_url" --quiet -c "DROP DATABASE IF EXISTS $(cat "$dir/database") WITH (FORCE)"
    fi
    rm -rf "$dir"
}

# Ends the process of a pid file, if it is still the one started here: its command line has $2.
end() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    running "$pid" "$2" || return 0
    kill "$pid"
    for _ in $(seq 50); do
        running "$pid" "$2" || return 0
        sleep 0.1
    done
    kill -9 "$pid"
}

# A zombie has an empty command line, so it does not count as running.
running() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop" ;;
esac

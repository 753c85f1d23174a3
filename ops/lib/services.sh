# shellcheck shell=bash
# Shared by ops/demo, ops/test, ops/down and ops/bench: install what is missing, start/stop private
# Redis and PostgreSQL servers on loopback with their data under a folder of ours.

NURTURE_APT_PACKAGES=(redis-server redis-tools postgresql libhiredis-dev libpq-dev libcurl4-openssl-dev
                      pkg-config python3 python3-aiosmtpd curl)
# What only the tests and benchmarks need: headless Chromium (the preference-centre browser test) and wrk.
NURTURE_TEST_APT_PACKAGES=(chromium wrk)

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ensure_packages [EXTRA_PACKAGE...]: installs what is missing of NURTURE_APT_PACKAGES and the extras.
ensure_packages() {
    local missing=()
    for p in "${NURTURE_APT_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing: ${missing[*]}"
        sudo_if_needed apt-get update -qq
        DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v swift >/dev/null || die "swift is not on PATH (install Swift 6.1+ from swift.org; see README)"
}

pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
    echo "$d"
}

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# as_pg_user CMD...: PostgreSQL refuses to run as root; run its tools as the `postgres` user when we are root.
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_redis DIR PORT [extra redis-server args...]
start_redis() {
    local dir=$1 port=$2; shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no "$@" >/dev/null
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
    cat "$dir/redis.log" >&2; die "redis-server did not start on port $port"
}

stop_redis() {
    local dir=$1
    if [ -f "$dir/redis.pid" ]; then
        local pid; pid=$(cat "$dir/redis.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        rm -f "$dir/redis.pid"
    fi
}

# start_postgres DIR PORT [fast]: a private cluster, trust auth on loopback only, database `nurture`.
start_postgres() {
    local dir=$1 port=$2 mode=${3:-}
    local bin; bin=$(pg_bindir)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$dir"; chmod 700 "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null \
            || die "initdb failed in $dir/data"
    fi
    local opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c shared_buffers=256MB"
    if [ "$mode" = fast ]; then
        # Throwaway test clusters: durability off (a crash loses the cluster, which is thrown away anyway).
        opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    else
        # Durable, tuned for bulk writes (a broadcast inserts and settles a delivery row per message): fewer
        # checkpoints, so fewer full-page images in the WAL, and those compressed (1M broadcast: 80.8 s -> 72.0 s).
        opts="$opts -c max_wal_size=8GB -c checkpoint_timeout=15min -c wal_compression=on"
    fi
    as_pg_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "$opts" -w -t 60 start >/dev/null \
        || { cat "$dir/postgres.log" >&2; die "PostgreSQL did not start on port $port"; }
    as_pg_user "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt \
        -c "SELECT 1 FROM pg_database WHERE datname='nurture'" | grep -q 1 \
        || as_pg_user "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres nurture
}

stop_postgres() {
    local dir=$1
    local bin; bin=$(pg_bindir)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

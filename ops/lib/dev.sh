# shellcheck shell=bash
# Shared by ops/demo and ops/down: the long-lived local installation under the project's `.dev/` folder.
#
#   .dev/env          export lines for the CLI (`. .dev/env`)
#   .dev/secret       NURTURE_SECRET, generated once and kept
#   .dev/redis/       Redis data (AOF), redis.pid, redis.log        127.0.0.1:$DEV_REDIS_PORT
#   .dev/pg/          PostgreSQL cluster (data/), postgres.log       127.0.0.1:$DEV_PG_PORT
#   .dev/pids/NAME.pid, .dev/logs/NAME.log   one per nurture process (scheduler, worker-1, worker-2, ...)
#
# Source ops/lib/services.sh first (log, die, start_redis, start_postgres, ...). Set DEV_ROOT (the repo) before use.

DEV_ROOT=${DEV_ROOT:-$(pwd)}
DEV_DIR=${NURTURE_DEV_DIR:-$DEV_ROOT/.dev}
DEV_REDIS_PORT=${NURTURE_DEV_REDIS_PORT:-16379}
DEV_PG_PORT=${NURTURE_DEV_PG_PORT:-15432}
DEV_NAMESPACE=${NURTURE_DEV_NAMESPACE:-demo}
DEV_BIN=${NURTURE_BIN:-$DEV_ROOT/.build/release/nurture}
# How long ops/down waits for a nurture process after SIGTERM before it sends SIGKILL (the contract's roles
# finish in-flight work first; k8s and compose give them 60 s and 30 s).
DEV_STOP_TIMEOUT=${NURTURE_DEV_STOP_TIMEOUT:-35}

DEV_REDIS_URL="redis://127.0.0.1:$DEV_REDIS_PORT/0"
DEV_DATABASE_URL="postgres://postgres@127.0.0.1:$DEV_PG_PORT/nurture"

# DRY_RUN=1: print the commands that would start/stop nurture processes instead of running them.
DRY_RUN=${DRY_RUN:-0}

# step_header TITLE: a visible, numbered header between demo steps.
DEV_STEP_NO=0
step_header() {
    DEV_STEP_NO=$((DEV_STEP_NO + 1))
    printf '\n\033[1;36m━━ %s. %s ━━\033[0m\n' "$DEV_STEP_NO" "$*"
}

# run_shown CMD...: echo a command as a user would type it (binary path shortened), then run it.
run_shown() {
    local a shown=()
    for a in "$@"; do
        if [ "$a" = "$DEV_BIN" ] && [ ${#shown[@]} -eq 0 ]; then shown+=(nurture)
        elif [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then shown+=("$a")
        else shown+=("'${a//\'/\'\\\'\'}'"); fi
    done
    printf '\033[2m$ %s\033[0m\n' "${shown[*]}"
    if [ "$DRY_RUN" = 1 ]; then return 0; fi
    "$@"
}

# tail_log FILE: the last lines of a log, indented, for failure messages.
tail_log() {
    local file=$1 lines=${2:-30}
    if [ -s "$file" ]; then
        printf -- '--- last %s lines of %s ---\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" | sed 's/^/    /' >&2
        printf -- '---\n' >&2
    else
        printf '(%s is empty or missing)\n' "$file" >&2
    fi
}

# ── data directory ────────────────────────────────────────────────────────────────────────────────────────────

dev_prepare_dirs() {
    mkdir -p "$DEV_DIR" "$DEV_DIR/pids" "$DEV_DIR/logs"
    chmod 755 "$DEV_DIR"
    if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
        # As root, PostgreSQL runs as `postgres`, which must be able to reach .dev/pg through every parent folder.
        if ! runuser -u postgres -- test -x "$DEV_DIR"; then
            die "the postgres user cannot reach $DEV_DIR (a parent folder is not world-searchable, e.g. /root is 0700).
       Move the checkout elsewhere, run as a normal user, or set NURTURE_DEV_DIR=/var/tmp/nurture-dev."
        fi
    fi
}

# The secret is generated once and kept, so signed links from earlier runs keep verifying.
dev_secret() {
    local file=$DEV_DIR/secret
    if [ ! -s "$file" ]; then
        (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' >"$file")
    fi
    cat "$file"
}

dev_write_env() {
    local secret; secret=$(dev_secret)
    local bindir; bindir=$(dirname "$DEV_BIN")
    (umask 077; cat >"$DEV_DIR/env" <<EOF
# Written by ops/demo. Use it with:  . .dev/env   then   nurture queues   (or .build/release/nurture queues)
export NURTURE_REDIS_URL=$DEV_REDIS_URL
export NURTURE_DATABASE_URL=$DEV_DATABASE_URL
export NURTURE_NAMESPACE=$DEV_NAMESPACE
export NURTURE_SECRET=$secret
export NURTURE_ALLOW_TIME_TRAVEL=1
# Prometheus /metrics and /healthz of a worker. The demo's own processes override it per process:
# worker-1 9464, worker-2 9465, scheduler 9466. A worker you start by hand next to them needs another port:
#   NURTURE_METRICS_PORT=9470 nurture worker
export NURTURE_METRICS_PORT=9464
case ":\$PATH:" in *":$bindir:"*) ;; *) export PATH="$bindir:\$PATH" ;; esac
EOF
    )
}

# ── Redis and PostgreSQL (idempotent) ─────────────────────────────────────────────────────────────────────────

dev_redis_running() { redis-cli -h 127.0.0.1 -p "$DEV_REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

dev_start_redis() {
    if dev_redis_running; then
        if [ -f "$DEV_DIR/redis/redis.pid" ] && kill -0 "$(cat "$DEV_DIR/redis/redis.pid")" 2>/dev/null; then
            log "Redis already running on 127.0.0.1:$DEV_REDIS_PORT"
        else
            log "a Redis that ops/demo did not start answers on 127.0.0.1:$DEV_REDIS_PORT; using it"
        fi
        return 0
    fi
    log "starting Redis on 127.0.0.1:$DEV_REDIS_PORT (data in $DEV_DIR/redis, AOF everysec)"
    # Later arguments override start_redis's throwaway defaults (--save "" --appendonly no): the demo keeps its data.
    start_redis "$DEV_DIR/redis" "$DEV_REDIS_PORT" --appendonly yes --appendfsync everysec
}

dev_pg_running() {
    local bin; bin=$(pg_bindir)
    [ -f "$DEV_DIR/pg/data/PG_VERSION" ] && as_pg_user "$bin/pg_ctl" -D "$DEV_DIR/pg/data" status >/dev/null 2>&1
}

dev_start_postgres() {
    if dev_pg_running; then
        log "PostgreSQL already running on 127.0.0.1:$DEV_PG_PORT"
        return 0
    fi
    local bin; bin=$(pg_bindir)
    if as_pg_user "$bin/pg_isready" -q -h 127.0.0.1 -p "$DEV_PG_PORT" 2>/dev/null; then
        die "something else already listens on 127.0.0.1:$DEV_PG_PORT; stop it or set NURTURE_DEV_PG_PORT"
    fi
    log "starting PostgreSQL on 127.0.0.1:$DEV_PG_PORT (data in $DEV_DIR/pg)"
    start_postgres "$DEV_DIR/pg" "$DEV_PG_PORT"
}

dev_stop_redis() {
    if [ -f "$DEV_DIR/redis/redis.pid" ]; then
        log "stopping Redis (127.0.0.1:$DEV_REDIS_PORT)"
        stop_redis "$DEV_DIR/redis"
    fi
}

dev_stop_postgres() {
    if dev_pg_running; then
        log "stopping PostgreSQL (127.0.0.1:$DEV_PG_PORT)"
        stop_postgres "$DEV_DIR/pg"
    fi
}

# ── nurture processes ─────────────────────────────────────────────────────────────────────────────────────────

# dev_role_pid NAME: prints the pid of a running process we started under NAME, or fails.
dev_role_pid() {
    local file=$DEV_DIR/pids/$1.pid pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # A recycled pid belonging to something else is not ours.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q nurture || return 1
    echo "$pid"
}

# dev_wait_healthz NAME PORT SECONDS: waits for http://127.0.0.1:PORT/healthz; dies (with the log) on failure.
dev_wait_healthz() {
    local name=$1 port=$2 seconds=$3 i
    for ((i = 0; i < seconds * 5; i++)); do
        if ! dev_role_pid "$name" >/dev/null; then
            tail_log "$DEV_DIR/logs/$name.log"
            die "nurture $name exited while starting (log: $DEV_DIR/logs/$name.log)"
        fi
        curl -fsS -m 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    tail_log "$DEV_DIR/logs/$name.log"
    die "nurture $name is running but http://127.0.0.1:$port/healthz did not answer within ${seconds}s"
}

# dev_start_role NAME METRICS_PORT ARGS...: starts `nurture ARGS...` in the background unless NAME already runs.
# METRICS_PORT may be "-" for none. Output goes to .dev/logs/NAME.log, the pid to .dev/pids/NAME.pid.
dev_start_role() {
    local name=$1 port=$2; shift 2
    local pid
    if pid=$(dev_role_pid "$name"); then
        log "$name already running (pid $pid)"
        return 0
    fi
    local envs=()
    [ "$port" != - ] && envs=(NURTURE_METRICS_PORT="$port")
    printf '\033[2m$ %snurture %s &   # log: .dev/logs/%s.log\033[0m\n' \
        "${envs[*]:+${envs[*]} }" "$*" "$name"
    [ "$DRY_RUN" = 1 ] && return 0
    (
        # shellcheck disable=SC1091
        . "$DEV_DIR/env"
        [ "$port" != - ] && export NURTURE_METRICS_PORT="$port"
        [ "$port" = - ] && unset NURTURE_METRICS_PORT
        # setsid: its own process group, so a Ctrl-C in the demo's terminal does not reach it.
        exec setsid "$DEV_BIN" "$@" >>"$DEV_DIR/logs/$name.log" 2>&1 </dev/null
    ) &
    echo $! >"$DEV_DIR/pids/$name.pid"
    sleep 0.5
    if ! dev_role_pid "$name" >/dev/null; then
        tail_log "$DEV_DIR/logs/$name.log"
        die "nurture $name exited right after starting (log: $DEV_DIR/logs/$name.log)"
    fi
    if [ "$port" != - ]; then dev_wait_healthz "$name" "$port" "${NURTURE_DEV_START_TIMEOUT:-30}"; fi
    log "$name running (pid $(cat "$DEV_DIR/pids/$name.pid"))"
}

# dev_stop_role NAME: SIGTERM, wait up to DEV_STOP_TIMEOUT seconds for a graceful exit, then SIGKILL.
dev_stop_role() {
    local name=$1 pid i
    if ! pid=$(dev_role_pid "$name"); then
        rm -f "$DEV_DIR/pids/$name.pid"
        return 0
    fi
    log "stopping $name (pid $pid, SIGTERM)"
    if [ "$DRY_RUN" = 1 ]; then return 0; fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < DEV_STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        printf 'warning: %s did not exit within %ss of SIGTERM; sending SIGKILL (its jobs will be reclaimed)\n' \
            "$name" "$DEV_STOP_TIMEOUT" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DEV_DIR/pids/$name.pid"
}

# All roles we have pid files for. Workers first (they finish in-flight jobs), then schedulers, then web.
dev_role_names() {
    local f names=()
    for f in "$DEV_DIR"/pids/*.pid; do
        [ -e "$f" ] || continue
        names+=("$(basename "$f" .pid)")
    done
    [ ${#names[@]} -eq 0 ] && return 0
    printf '%s\n' "${names[@]}" | awk '{ o = /^worker/ ? 0 : /^scheduler/ ? 1 : 2; print o "\t" $0 }' \
        | sort | cut -f2
}

# dev_stop_roles: stops every nurture process (workers in parallel, so their grace periods overlap).
dev_stop_roles() {
    local name pids=()
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        case $name in
            worker*) dev_stop_role "$name" & pids+=($!) ;;
            *) if [ ${#pids[@]} -gt 0 ]; then wait "${pids[@]}"; pids=(); fi; dev_stop_role "$name" ;;
        esac
    done < <(dev_role_names)
    if [ ${#pids[@]} -gt 0 ]; then wait "${pids[@]}"; fi
}

#!/usr/bin/env bash
# Build the worker image on this machine and keep a private Docker daemon for the container
# tests (tests/integration/test_worker_container.py, `make test-container`).
#
# Why this script: image registries are not reachable here, so no public FROM can be pulled.
# It makes a Debian root with debootstrap, imports it as an image, adds a venv with torch
# (test-base.Dockerfile, which trusts the host's CA for pip: TEST ONLY), and builds the
# project's Dockerfile on that with --build-arg BASE_IMAGE. The daemon is our own — its own
# socket, data root and pid file under $VSR_DOCKER_STATE — so nothing of the host's Docker
# (if any) is touched, and `stop` ends exactly the process `start` began.
#
#   build_test_image.sh build   start the daemon if needed, make or reuse the base, build the image
#   build_test_image.sh start   only start the daemon (images built before are kept on disk)
#   build_test_image.sh stop    stop the daemon this script started (images stay on disk)
#   build_test_image.sh env     print the DOCKER_HOST line for a shell
#   build_test_image.sh clean   stop the daemon and delete its data root (every image: ~9 GB)
#
# Needs root (dockerd, debootstrap) and apt (installs docker.io and debootstrap if missing).
# Settings (environment): VSR_DOCKER_STATE (default /var/tmp/vsr-docker: put it on a disk with
# ~20 GB free), VSR_WORKER_IMAGE (vsr-worker:test), TORCH_SPEC, DEBIAN_MIRROR.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${VSR_DOCKER_STATE:-/var/tmp/vsr-docker}
SOCKET=$STATE/docker.sock
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
IMAGE=${VSR_WORKER_IMAGE:-vsr-worker:test}
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
ROOTFS_IMAGE=vsr-test-rootfs:$SUITE
# The base's tag names what is in it, so a changed TORCH_SPEC builds a new one.
BASE_IMAGE=vsr-test-base:$(printf '%s' "$SUITE $TORCH_SPEC" | sha256sum | cut -c1-12)
# Debian's docker CLI matches its daemon (another `docker` earlier on PATH may be newer and
# default to BuildKit, which this daemon's build of 20.10 does not need).
DOCKER=${DOCKER:-/usr/bin/docker}
export DOCKER_HOST=unix://$SOCKET

say() { printf '[build_test_image] %s\n' "$*" >&2; }

ensure_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    [ -x "$DOCKER" ] || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

daemon_up() { "$DOCKER" info >/dev/null 2>&1; }

start_daemon() {
    if daemon_up; then
        say "dockerd already answering on $SOCKET"
        return
    fi
    mkdir -p "$STATE/data" "$STATE/exec"
    say "starting dockerd (data root $STATE/data, log $LOG)"
    # overlay2 works here; the default bridge and iptables do not (FACTS.md): containers use
    # --network host. setsid: the daemon outlives this script until `stop`.
    setsid dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
        --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$PIDFILE" \
        -H "$DOCKER_HOST" >"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        daemon_up && return
        sleep 0.5
    done
    say "dockerd did not answer in 30 s; its log:"
    tail -n 30 "$LOG" >&2
    exit 1
}

stop_daemon() {
    if [ ! -s "$PIDFILE" ]; then
        say "no dockerd of ours is running"
        return
    fi
    local pid
    pid=$(cat "$PIDFILE")
    say "stopping dockerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return; }
        sleep 0.5
    done
    say "dockerd $pid still running after 30 s; see $LOG"
    exit 1
}

has_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

make_rootfs() {
    has_image "$ROOTFS_IMAGE" && return
    local root=$STATE/rootfs
    rm -rf "$root"
    say "debootstrap $SUITE (minbase + python3) into $root"
    local t0=$SECONDS
    # passwd: useradd for the Dockerfile's user; ca-certificates: TLS for everything else.
    debootstrap --variant=minbase --include=python3,python3-venv,passwd,ca-certificates \
        "$SUITE" "$root" "$DEBIAN_MIRROR" >"$STATE/debootstrap.log" 2>&1 \
        || { tail -n 30 "$STATE/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$DOCKER" import - "$ROOTFS_IMAGE" >/dev/null
    rm -rf "$root"
    say "rootfs image $ROOTFS_IMAGE in $((SECONDS - t0)) s"
}

make_base() {
    has_image "$BASE_IMAGE" && { say "reusing $BASE_IMAGE"; return; }
    local context
    context=$(mktemp -d)
    # TEST ONLY: the host's CA bundle, for pip behind this machine's TLS proxy.
    cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca.crt"
    cp "$REPO/packaging/docker/test-base.Dockerfile" "$context/Dockerfile"
    say "building $BASE_IMAGE ($TORCH_SPEC)"
    local t0=$SECONDS
    "$DOCKER" build --network host -t "$BASE_IMAGE" \
        --build-arg ROOTFS_IMAGE="$ROOTFS_IMAGE" --build-arg TORCH_SPEC="$TORCH_SPEC" \
        "$context" >"$STATE/base-build.log" 2>&1 \
        || { tail -n 40 "$STATE/base-build.log" >&2; rm -rf "$context"; exit 1; }
    rm -rf "$context"
    say "base image in $((SECONDS - t0)) s"
}

build_worker() {
    say "building $IMAGE (packaging/docker/Dockerfile on $BASE_IMAGE)"
    local t0=$SECONDS
    "$DOCKER" build --network host -t "$IMAGE" -f "$REPO/packaging/docker/Dockerfile" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" "$REPO" >"$STATE/build.log" 2>&1 \
        || { tail -n 40 "$STATE/build.log" >&2; exit 1; }
    local size
    size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
    say "$IMAGE in $((SECONDS - t0)) s, $((size / 1000000)) MB; DOCKER_HOST=$DOCKER_HOST"
}

case "${1:-build}" in
    build)
        [ "$(id -u)" = 0 ] || { say "needs root (dockerd, debootstrap)"; exit 1; }
        ensure_packages
        start_daemon
        make_rootfs
        make_base
        build_worker
        ;;
    start)
        [ "$(id -u)" = 0 ] || { say "needs root (dockerd)"; exit 1; }
        ensure_packages
        start_daemon
        ;;
    stop) stop_daemon ;;
    env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
    clean)
        stop_daemon
        say "deleting $STATE"
        rm -rf "$STATE"
        ;;
    *)
        sed -n '2,20p' "$0" >&2
        exit 2
        ;;
esac

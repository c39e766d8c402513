#!/bin/bash
# image-check.sh - build and try the container image where no container
# engine runs (this project's machines have none).
#
# Each FROM of the Dockerfile starts a fresh Debian 12 root made by
# debootstrap (minbase, the closest thing to debian:12 / debian:12-slim);
# WORKDIR, COPY (the build context minus .dockerignore), COPY --from, RUN,
# USER, ENTRYPOINT and CMD are followed in chroots. Then tests/rig/image-run.js
# runs the final root's command as its user: --check on the baked config, and
# the daemon serving real queries from stand-ins on this machine's loopback.
#
# Needs root (chroot, /proc mounts), debootstrap, network to the Debian
# mirror, and `make deps` done (node and the rig's npm packages). Takes a few
# minutes; not part of `make test`.
#   sudo tests/rig/image-check.sh [MIRROR]     default: this machine's apt mirror
# KK_IMAGE_KEEP=1 keeps the roots (printed at the end); KK_IMAGE_BASE=DIR
# uses DIR (a debootstrap of bookworm, minbase) instead of making one.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MIRROR=${1:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$MIRROR" ] || { echo "image-check: no Debian mirror given or configured" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "image-check: needs root (chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "image-check: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/kk-image.XXXXXX)
MOUNTS=()
cleanup() {
    local m
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    if [ "${KK_IMAGE_KEEP:-0}" = 1 ]; then
        echo "image-check: roots kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
say() { printf '== %s\n' "$*" >&2; }

BASE=${KK_IMAGE_BASE:-$WORK/base}
if [ -z "${KK_IMAGE_BASE:-}" ]; then
    say "debootstrap bookworm (minbase) from $MIRROR"
    debootstrap --variant=minbase bookworm "$BASE" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
fi

# The build context: the tree minus .dockerignore's entries.
EXCLUDES=()
while read -r pat; do
    [ -z "$pat" ] || [ "${pat#\#}" != "$pat" ] || EXCLUDES+=(--exclude="./$pat")
done <"$ROOT/.dockerignore"

declare -A STAGES=()
n=0 CUR="" WORKDIR=/ USER_=root ENTRY='[]' CMD='[]'

new_stage() { # FROM image [AS name]
    n=$((n + 1))
    CUR=$WORK/stage$n
    cp -a "$BASE" "$CUR"
    cp /etc/resolv.conf "$CUR/etc/resolv.conf"
    mount -t proc proc "$CUR/proc"
    MOUNTS+=("$CUR/proc")
    WORKDIR=/ USER_=root ENTRY='[]' CMD='[]'
    [ -z "${2:-}" ] || STAGES[$2]=$CUR
    say "stage $n: FROM $1 ${2:+AS $2} (debootstrap minbase)"
}

run_in() { # RUN command (as root; Dockerfile RUN runs as USER, ours are root)
    say "RUN $*"
    chroot "$CUR" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root /bin/sh -c "cd '$WORKDIR' && $*" </dev/null
}

copy_in() { # COPY [--from=stage] src... dst
    local from="" dst src
    if [ "${1#--from=}" != "$1" ]; then from=${STAGES[${1#--from=}]}; shift; fi
    dst=${*: -1}
    [ "${dst#/}" != "$dst" ] || dst="$WORKDIR/$dst"
    say "COPY ${from:+(from $from) }${*:1:$#-1} -> $dst"
    for src in "${@:1:$#-1}"; do
        if [ -n "$from" ]; then
            mkdir -p "$(dirname "$CUR$dst")"
            cp -a "$from$src" "$CUR$dst"
        elif [ "$src" = . ]; then
            mkdir -p "$CUR$dst"
            tar -C "$ROOT" "${EXCLUDES[@]}" -cf - . | tar -C "$CUR$dst" -xf -
        else
            mkdir -p "$(dirname "$CUR$dst")"
            cp -a "$ROOT/$src" "$CUR$dst"
        fi
    done
}

# The Dockerfile as instructions: continuation lines joined, comments dropped.
while IFS= read -r line; do
    set -f # no globbing of the instruction's words
    # shellcheck disable=SC2086
    set -- $line
    set +f
    op=${1^^}
    shift
    case $op in
    FROM)
        as=${2:-}
        if [ "${as^^}" = AS ] && [ -n "${3:-}" ]; then new_stage "$1" "$3"; else new_stage "$1"; fi
        ;;
    WORKDIR) WORKDIR=$1; mkdir -p "$CUR$WORKDIR" ;;
    RUN) run_in "${line#* }" ;;
    COPY) copy_in "$@" ;;
    USER) USER_=$1 ;;
    ENTRYPOINT) ENTRY=${line#* } ;;
    CMD) CMD=${line#* } ;;
    EXPOSE | LABEL | ENV | ARG) say "$op $* (not needed here)" ;;
    *) echo "image-check: $op is not followed by this script" >&2; exit 1 ;;
    esac
done < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$ROOT/Dockerfile" | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$')

say "the image's command: $ENTRY + $CMD as user $USER_ in $WORKDIR"
if chroot "$CUR" /bin/sh -c 'ldd /usr/local/bin/kubemq-kinesis' | grep 'not found'; then
    echo "image-check: libraries missing in the image" >&2
    exit 1
fi
node "$ROOT/tests/rig/image-run.js" "$CUR" "$USER_" "$WORKDIR" "$ENTRY" "$CMD"
say "image-check: OK"

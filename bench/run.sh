#!/usr/bin/env bash
# run.sh - `make bench`: every benchmark, figures into BENCHMARKS.md.
#
#   1. bench-pipeline: the per-request path in one process (null transport):
#      requests/s on one core, and instructions per request under callgrind.
#   2. bench-load through the stand-in broker (tests/rig/broker.js, started
#      by bench/broker.js) to the daemon, against bench-sink (a fast Kinesis
#      stand-in): throughput, latency, and per request the daemon's CPU (by
#      thread), system calls (by name in one run), context switches; its
#      threads, idle and peak RSS, at concurrency 1, 16, 64 and with 1,000
#      requests in flight; a soak of 1,000,000 queries with RSS read at
#      100k and 1M; one run with no relay in front of the broker (its
#      cost); put_record with and without coalescing.
#   3. KPL aggregation: put_record of 100 bytes at concurrency 64 against
#      bench-sink, coalesced and aggregated (user records/s, CPU, user
#      records per Kinesis record); the pipeline's aggregate_500x100 case.
# Every process started here is stopped by its PID (also on failure).
# Environment: KK_BENCH_QUICK=1 runs fewer requests (a smoke test);
# KK_BENCH_OUT=FILE writes the report elsewhere (default BENCHMARKS.md);
# KK_BENCH_KEEP=1 keeps the work directory (results, profiles, logs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${KK_BENCH_BUILD:-$ROOT/build}
OUT=${KK_BENCH_OUT:-$ROOT/BENCHMARKS.md}
WORK=$(mktemp -d /tmp/kk-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
PIDS=()

cleanup() {
    local pid f
    # start() runs in a command substitution (a subshell): its children are
    # known by their pid files.
    for f in "$WORK"/*.pid; do
        [ -f "$f" ] && PIDS+=("$(cat "$f")")
    done
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${KK_BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: work files kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

say() { printf '== %s\n' "$*" >&2; }
record() { printf '%s\n' "$1" >>"$RESULTS"; }

# The number after "key": in a one-line JSON text.
json_num() { grep -o "\"$1\":[0-9.]*" <<<"$2" | head -1 | cut -d: -f2; }

# start NAME CMD... : run in the background, remember the PID, wait for
# the ready line ({"ready":true,...}) on stdout; prints the line.
start() {
    local name=$1 line=""
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    echo "$pid" >"$WORK/$name.pid"
    for _ in $(seq 300); do
        line=$(grep -m1 '"ready"' "$WORK/$name.out" 2>/dev/null || true)
        [ -n "$line" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if ! grep -q '"ready":true' <<<"$line"; then
        echo "bench: $name did not start:" >&2
        cat "$WORK/$name.err" >&2
        exit 1
    fi
    echo "$line"
}

# stop NAME : SIGTERM by PID, wait for the exit.
stop() {
    local pid
    pid=$(cat "$WORK/$1.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Where a process's RSS is: private vs shared, and the biggest mappings.
smaps_json() {
    awk '
        /^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon]" : $6); sub(/.*\//, "", name) }
        /^Rss:/ { rss[name] += $2 }
        /^Private_Dirty:/ { pd += $2 }
        /^Private_Clean:/ { pc += $2 }
        /^Shared_Clean:/ { sc += $2 }
        /^Shared_Dirty:/ { sd += $2 }
        END {
            printf "{\"private_dirty_kb\":%d,\"private_clean_kb\":%d,\"shared_clean_kb\":%d,\"shared_dirty_kb\":%d,\"top\":[", pd, pc, sc, sd
            n = 0
            while (n < 8) {
                best = ""; bv = -1
                for (k in rss) if (rss[k] > bv) { bv = rss[k]; best = k }
                if (best == "") break
                printf "%s[\"%s\",%d]", (n ? "," : ""), best, bv
                delete rss[best]; n++
            }
            printf "]}"
        }' "/proc/$1/smaps"
}

for bin in kubemq-kinesis bench-pipeline bench-load bench-sink; do
    [ -x "$BUILD/$bin" ] || { echo "bench: $BUILD/$bin missing (run make build)" >&2; exit 1; }
done

QUICK=${KK_BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    PIPE_SECONDS=0.5 N1=200 N16=1000 N64=1000 NFLIGHT=2000 NCO=1000 NAGG=5000 CG_SCALE=10
    NSOAK=20000 SOAK_MARKS=2000,20000
else
    PIPE_SECONDS=3 N1=3000 N16=20000 N64=20000 NFLIGHT=5000 NCO=20000 NAGG=100000 CG_SCALE=1
    NSOAK=1000000 SOAK_MARKS=100000,1000000
fi

# ---- machine ----
say "machine"
record "$(printf '{"kind":"machine","cpu":"%s","cores":%s,"mem_kb":%s,"kernel":"%s","load":"%s","date":"%s","commit":"%s","node":"%s","valgrind":"%s"}' \
    "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" \
    "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" "$(uname -r)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%Y-%m-%dT%H:%MZ)" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(node --version 2>/dev/null || echo none)" "$(valgrind --version 2>/dev/null || echo none)")"

# ---- 1. pipeline ----
say "bench-pipeline: requests/s on one core"
while read -r line; do
    record "{\"kind\":\"pipeline\",${line#\{}"
done < <(taskset -c 0 "$BUILD/bench-pipeline" --seconds "$PIPE_SECONDS" 2>/dev/null ||
         "$BUILD/bench-pipeline" --seconds "$PIPE_SECONDS")

if command -v valgrind >/dev/null; then
    say "bench-pipeline under callgrind: instructions per request"
    for spec in put_record_100:2000 put_record_1k:2000 put_record_64k:100 put_records_500x1k:4 \
        aggregate_500x100:2000; do
        name=${spec%%:*}
        n=$(( ${spec#*:} / CG_SCALE ))
        [ "$n" -lt 2 ] && n=2
        valgrind --tool=callgrind --collect-atstart=no --toggle-collect=pipeline_run \
            --callgrind-out-file="$WORK/cg.$name" "$BUILD/bench-pipeline" --case "$name" \
            --requests "$n" >/dev/null 2>"$WORK/cg.$name.err"
        ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.$name")
        record "{\"kind\":\"callgrind\",\"case\":\"$name\",\"requests\":$n,\"ir\":$ir,\"ir_per_request\":$((ir / n))}"
        callgrind_annotate --inclusive=yes "$WORK/cg.$name" 2>/dev/null |
            awk '$1 ~ /^[0-9,]+$/ && /:pipeline_loop /, 0' | awk '$1 ~ /^[0-9,]+$/' |
            sed 's/ *\[[^]]*\]$//' | head -36 >"$WORK/profile.$name.txt" || true
    done
    # The profile of the 1 KiB case goes into the report.
    cp "$WORK/profile.put_record_1k.txt" "$WORK/profile.txt" 2>/dev/null || true
fi

# ---- 2. through the broker ----
say "stand-ins: bench-sink and the broker"
sink=$(start sink "$BUILD/bench-sink" --port 0)
SINK_PORT=$(json_num port "$sink")
slow=$(start slowsink "$BUILD/bench-sink" --port 0 --latency-ms 100)
SLOW_PORT=$(json_num port "$slow")
# Kinesis answers PutRecord in roughly 10-30 ms: this one waits 20 ms.
real=$(start realsink "$BUILD/bench-sink" --port 0 --latency-ms 20)
REAL_PORT=$(json_num port "$real")
broker=$(start broker node "$ROOT/bench/broker.js")
BROKER_PORT=$(json_num port "$broker")
BROKER_DIRECT=$(json_num direct "$broker")
BROKER_CTL=$(json_num control "$broker")
BROKER_PID=$(cat "$WORK/broker.pid")

# write_config FILE CHANNEL SINK_PORT CONCURRENCY [extra target properties...]
# (BROKER=port overrides the broker port the daemon connects to)
write_config() {
    local file=$1 channel=$2 port=$3 conc=$4 api
    shift 4
    api=$(free_port)
    {
        echo "apiPort: $api"
        echo "apiAddress: 127.0.0.1"
        echo "bindings:"
        echo "  - name: bench"
        echo "    source:"
        echo "      kind: kubemq.query"
        echo "      name: bench-query"
        echo "      properties:"
        echo "        address: \"127.0.0.1:${BROKER:-$BROKER_PORT}\""
        echo "        channel: \"$channel\""
        echo "        concurrency: \"$conc\""
        echo "    target:"
        echo "      kind: aws.kinesis"
        echo "      name: bench-kinesis"
        echo "      properties:"
        echo "        aws_key: \"AKIDBENCHMARK\""
        echo "        aws_secret_key: \"bench-secret-key\""
        echo "        region: \"us-east-1\""
        echo "        endpoint: \"http://127.0.0.1:$port\""
        for kv in "$@"; do
            echo "        ${kv%%=*}: \"${kv#*=}\""
        done
    } >"$file"
}

# daemon NAME CONFIG CHANNEL : start, wait until its subscription is live
# in the broker; records the time to ready and the idle RSS.
daemon() {
    local name=$1 config=$2 channel=$3 t0 t1 pid
    t0=$(date +%s%N)
    "$BUILD/kubemq-kinesis" --config "$config" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    pid=$!
    PIDS+=("$pid")
    echo "$pid" >"$WORK/$name.pid"
    for _ in $(seq 1000); do
        if curl -sf "http://127.0.0.1:$BROKER_CTL/stats" | grep -q "\"$channel\":{\"\":1}"; then
            break
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.err" >&2; exit 1; }
        sleep 0.005
    done
    t1=$(date +%s%N)
    sleep 1
    # Spawn to subscribed, from the daemon's own log line (wall clock, ms):
    # no polling in the figure. The polled time is kept as an upper bound.
    local sub ready
    sub=$(sed -n 's/^\([0-9T:.-]*\)Z .*subscribed to queries.*/\1/p' "$WORK/$name.err" | head -1)
    if [ -n "$sub" ]; then
        ready=$(( $(date -u -d "$sub" +%s%3N) - t0 / 1000000 ))
    else
        ready=$(( (t1 - t0) / 1000000 ))
    fi
    record "{\"kind\":\"daemon\",\"name\":\"$name\",\"ready_ms\":$ready,\"ready_polled_ms\":$(( (t1 - t0) / 1000000 )),\"idle_rss_kb\":$(rss_kb "$pid"),\"smaps\":$(smaps_json "$pid")}"
}

# load LABEL DAEMON CHANNEL ARGS... : one bench-load run, recorded.
# (BROKER=port: the broker port the load generator sends to)
load() {
    local label=$1 name=$2 channel=$3 line
    shift 3
    line=$("$BUILD/bench-load" --address "127.0.0.1:${BROKER:-$BROKER_PORT}" --channel "$channel" \
        --pid "$(cat "$WORK/$name.pid")" --broker-pid "$BROKER_PID" --label "$label" "$@")
    record "{\"kind\":\"load\",${line#\{}"
    say "  $label: $(json_num per_second "$line") req/s, p50 $(json_num p50_ms "$line") ms, daemon $(json_num daemon_cpu_s_per_1000 "$line") ms CPU/request, $(json_num daemon_ctxsw_per_req "$line") context switches/request$(grep -q syscalls_per_req <<<"$line" && echo ", $(json_num daemon_syscalls_per_req "$line") system calls/request")"
}

# System calls by name: perf trace (or strace -c -f) attached to the
# daemon over one run of N queries (no warm-up: the daemon is warm).
# Records {"kind":"sysnames","tool":..,"requests":N,"by_name":{...}}.
sysnames() {
    local name=$1 channel=$2 n=$3 pid tool="" tpid
    pid=$(cat "$WORK/$name.pid")
    if command -v perf >/dev/null && perf trace -s -o "$WORK/probe.trace" -- true >/dev/null 2>&1; then
        tool="perf trace"
        perf trace -s -p "$pid" -o "$WORK/sys.trace" >/dev/null 2>&1 &
    elif command -v strace >/dev/null; then
        tool="strace"
        strace -c -f -p "$pid" -o "$WORK/sys.trace" >/dev/null 2>&1 &
    else
        return 0
    fi
    tpid=$!
    PIDS+=("$tpid")
    sleep 1
    "$BUILD/bench-load" --address "127.0.0.1:$BROKER_PORT" --channel "$channel" --requests "$n" \
        --warmup 0 --concurrency 16 --size 1024 >/dev/null
    kill -INT "$tpid" 2>/dev/null || true
    wait "$tpid" 2>/dev/null || true
    # perf trace: "   name   calls  errors  total ..." per thread; strace -c:
    # "% time seconds usecs/call calls [errors] syscall".
    awk -v tool="$tool" -v n="$n" '
        tool == "perf trace" && $1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && NF >= 8 { c[$1] += $2 }
        tool == "strace" && $1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" { c[$NF] += $4 }
        END {
            printf "{\"kind\":\"sysnames\",\"tool\":\"%s\",\"requests\":%d,\"by_name\":{", tool, n
            k = 0
            for (s in c) printf "%s\"%s\":%d", (k++ ? "," : ""), s, c[s]
            printf "}}\n"
        }' "$WORK/sys.trace" >>"$RESULTS"
}

say "daemon: put_record 1 KiB through the broker"
write_config "$WORK/plain.yaml" bench.plain "$SINK_PORT" 64
daemon plain "$WORK/plain.yaml" bench.plain
load c1 plain bench.plain --requests "$N1" --concurrency 1 --size 1024 --count-syscalls
# The target figures: three c16 runs (the report takes the median; run to
# run the figure moves with the broker's pace), none of them observed by
# anything but /proc. Then c16 with the daemon's system calls counted (a
# perf counter on the syscall tracepoint: cheap, not free), the system
# calls by name (perf trace or strace: slows the daemon), and one more
# c16 run sampled with perf (when the kernel lets us) for where the
# daemon's CPU goes: perf's sampling costs the sampled process CPU too, so
# none of these runs is one of the three.
load c16 plain bench.plain --requests "$N16" --concurrency 16 --size 1024
load c16_2 plain bench.plain --requests "$N16" --concurrency 16 --size 1024
load c16_3 plain bench.plain --requests "$N16" --concurrency 16 --size 1024
load c16_sys plain bench.plain --requests "$N16" --concurrency 16 --size 1024 --count-syscalls
say "  system calls by name (c16)"
sysnames plain bench.plain $((N16 / 2))
if command -v perf >/dev/null && perf record -q -o "$WORK/perf.probe" -- true >/dev/null 2>&1; then
    perf record -q -F 999 -g -p "$(cat "$WORK/plain.pid")" -o "$WORK/perf.data" >/dev/null 2>&1 &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    sleep 0.5
    load c16_perf plain bench.plain --requests "$N16" --concurrency 16 --size 1024
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
        awk '$1 ~ /%$/ {print $1, $2}' | head -15 >"$WORK/perf.dso.txt" || true
    perf report -i "$WORK/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
        awk '$1 ~ /%$/' | head -25 >"$WORK/perf.sym.txt" || true
fi
load c64 plain bench.plain --requests "$N64" --concurrency 64 --size 1024 --count-syscalls
say "  soak: $NSOAK queries at concurrency 16, RSS at $SOAK_MARKS"
load soak_c16 plain bench.plain --requests "$NSOAK" --concurrency 16 --size 1024 \
    --rss-at "$SOAK_MARKS" --timeout-ms 60000
load c16_100b plain bench.plain --requests "$N16" --concurrency 16 --size 100
load c16_64k plain bench.plain --requests $((N16 / 10)) --concurrency 16 --size 65536
load put_records_c16 plain bench.plain --requests $((N16 / 100 + 10)) --concurrency 16 \
    --size 1024 --method put_records --records 500
stop plain

# The relay in front of the broker (tests/rig/broker-front.js) runs in the
# broker's thread: the same c16 load with daemon and load generator on
# grpc-js's own port shows what it costs.
say "daemon: c16 with no relay in front of the broker"
BROKER=$BROKER_DIRECT write_config "$WORK/direct.yaml" bench.direct "$SINK_PORT" 64
daemon direct "$WORK/direct.yaml" bench.direct
BROKER=$BROKER_DIRECT load c16_direct direct bench.direct --requests "$N16" --concurrency 16 --size 1024
BROKER=$BROKER_DIRECT load c16_direct_sys direct bench.direct --requests "$N16" --concurrency 16 \
    --size 1024 --count-syscalls
stop direct

# The daemon under callgrind: user-space instructions per query, by
# library (the difference of two runs, so startup cancels out).
if command -v valgrind >/dev/null; then
    say "daemon under callgrind: instructions per query by library"
    cg_daemon() {
        local n=$1 pid
        valgrind --tool=callgrind --callgrind-out-file="$WORK/cgd.$n" "$BUILD/kubemq-kinesis" \
            --config "$WORK/plain.yaml" >/dev/null 2>"$WORK/cgd.$n.err" &
        pid=$!
        PIDS+=("$pid")
        for _ in $(seq 300); do
            grep -q "subscribed to queries" "$WORK/cgd.$n.err" && break
            sleep 0.1
        done
        "$BUILD/bench-load" --address "127.0.0.1:$BROKER_PORT" --channel bench.plain \
            --requests "$n" --warmup 0 --concurrency 16 --timeout-ms 60000 >/dev/null
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        callgrind_annotate "$WORK/cgd.$n" 2>/dev/null | grep -E '^ *[0-9,]+ ' | sed 's/(.*%)//' |
            awk '/TOTALS/ {next} {ir=$1; gsub(",","",ir); o=$NF; if (o !~ /^\[\//) o="[other]"; sub(/.*\//, "", o); sub(/\]$/, "", o); s[o]+=ir}
                 END {for (k in s) print k, s[k]}' | sort >"$WORK/cgd.$n.dso"
    }
    CG_A=$((300 / CG_SCALE + 20))
    CG_B=$((1300 / CG_SCALE + 120))
    cg_daemon "$CG_A"
    cg_daemon "$CG_B"
    join "$WORK/cgd.$CG_A.dso" "$WORK/cgd.$CG_B.dso" |
        awk -v n=$((CG_B - CG_A)) '{d = ($3 - $2) / n; if (d > 500) printf "%s%s:%d", (c++ ? "," : ""), "\"" $1 "\"", d} END {print ""}' |
        { read -r parts; record "{\"kind\":\"cgdaemon\",\"requests\":$((CG_B - CG_A)),\"by_lib\":{$parts}}"; }
fi

say "daemon: 1,000 requests in flight (the sink holds each reply 100 ms)"
write_config "$WORK/flight.yaml" bench.flight "$SLOW_PORT" 1000
daemon flight "$WORK/flight.yaml" bench.flight
load inflight_1000 flight bench.flight --requests "$NFLIGHT" --concurrency 1000 --size 1024 \
    --warmup 1000
stop flight

# Three runs of each, alternately: on two shared cores one run of each
# moves with whatever else runs (the report takes the medians).
say "coalescing in process: put_record 1 KiB, 64 in flight, against bench-sink"
for i in 1 2 3; do
    for co in "" --coalesce; do
        line=$("$BUILD/bench-pipeline" --case put_record_1k --sink "http://127.0.0.1:$SINK_PORT" \
            --batch 64 --requests "$NCO" $co)
        record "{\"kind\":\"sinkpipe\",\"run\":$i,${line#\{}"
        say "  ${co:-plain}: $(json_num records_per_second "$line") records/s, $(json_num cpu_us_per_record "$line") us CPU/record"
    done
done

say "aggregation in process: put_record 100 B, 64 in flight, against bench-sink"
for i in 1 2 3; do
    for mode in --coalesce --aggregate; do
        line=$("$BUILD/bench-pipeline" --case put_record_100 --sink "http://127.0.0.1:$SINK_PORT" \
            --batch 64 --requests "$NAGG" $mode)
        record "{\"kind\":\"aggpipe\",\"run\":$i,${line#\{}"
        say "  ${mode#--}: $(json_num records_per_second "$line") records/s, $(json_num cpu_us_per_record "$line") us CPU/record"
    done
done

say "daemon: coalescing through the broker (put_record at concurrency 64, sink answers in 20 ms)"
before=$(curl -sf "http://127.0.0.1:$REAL_PORT/_sink/stats")
write_config "$WORK/nocoalesce.yaml" bench.nocoalesce "$REAL_PORT" 64
daemon nocoalesce "$WORK/nocoalesce.yaml" bench.nocoalesce
load coalesce_off_c64 nocoalesce bench.nocoalesce --requests "$NCO" --concurrency 64 --size 1024
stop nocoalesce
mid=$(curl -sf "http://127.0.0.1:$REAL_PORT/_sink/stats")
write_config "$WORK/coalesce.yaml" bench.coalesce "$REAL_PORT" 64 coalesce=true
daemon coalesce "$WORK/coalesce.yaml" bench.coalesce
load coalesce_on_c64 coalesce bench.coalesce --requests "$NCO" --concurrency 64 --size 1024
stop coalesce
after=$(curl -sf "http://127.0.0.1:$REAL_PORT/_sink/stats")
record "{\"kind\":\"sink\",\"before\":$before,\"mid\":$mid,\"after\":$after}"

stop broker
stop realsink
stop slowsink
stop sink

say "report: $OUT"
node "$ROOT/bench/report.js" "$WORK" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"

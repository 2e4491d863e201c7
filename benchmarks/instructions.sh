#!/bin/bash
# User-space instructions per message of one SMTP server, counted by
# valgrind's callgrind: a figure that, unlike msgs/s, hardly moves with the
# machine's load. The server runs under callgrind twice, taking FEW and then
# MANY messages from smtp-source over one connection (-d -s 1, no
# pipelining); the difference divided by MANY - FEW removes start-up and
# shutdown. Kernel work (the system calls themselves) is not counted.
#
#   bash benchmarks/instructions.sh asyncio 1024       # smtp-core, 1 KiB messages
#   bash benchmarks/instructions.sh aiosmtpd 102400    # or sync, trio, anyio, bare, bare-driver
#   RECONNECT=1 bash benchmarks/instructions.sh asyncio 1024   # a new connection each
#
# Needs valgrind and /usr/sbin/smtp-source; takes a minute or two per server.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?server: asyncio, sync, trio, anyio, aiosmtpd, bare or bare-driver}
size=${2:-1024}
keep=-d over=  # one connection for all; RECONNECT=1: a new connection for every message
if [ "${RECONNECT:-0}" = 1 ]; then keep= over=" over new connections"; fi
few=${FEW:-100}
many=${MANY:-500}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

count() {  # count MESSAGES -> instructions of the whole server run
    local port=$((20000 + RANDOM % 20000)) command
    case $server in
        aiosmtpd) command=(.venv/bin/python -m aiosmtpd -n -c aiosmtpd.handlers.Sink -l "127.0.0.1:$port") ;;
        bare) command=(.venv/bin/python benchmarks/bare_sink.py --port "$port") ;;
        bare-driver) command=(.venv/bin/python benchmarks/bare_driver.py --port "$port") ;;
        *) command=(.venv/bin/python -m backends.cli serve --sink --backend "$server" --port "$port") ;;
    esac
    valgrind --tool=callgrind --callgrind-out-file="$work/out" "${command[@]}" >/dev/null 2>"$work/err" &
    local pid=$! tries
    for tries in $(seq 1 120); do  # up to a minute for the slowed start-up
        sleep 0.5
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    done
    /usr/sbin/smtp-source $keep -s 1 -m "$1" -l "$size" -f a@example.org -t b@example.org "127.0.0.1:$port"
    kill -INT "$pid"
    sleep 1
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep -o "Collected : [0-9]*" "$work/err" | grep -o "[0-9]*$"
}

low=$(count "$few")
high=$(count "$many")
echo "$server, $size-octet messages$over: $(((high - low) / (many - few))) instructions per message"

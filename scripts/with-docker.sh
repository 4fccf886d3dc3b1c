#!/bin/sh
# Run a command with a Docker engine at hand. When no engine answers, start dockerd in the
# background (detached from the terminal, log in data/dockerd/) and stop it when the command
# ends, so that nothing this script started outlives it. The engine it starts reads the
# project's daemon config (scripts/dockerd.json: gVisor's runsc registered, without a network
# of its own, which runsc needs for `--network none` containers), never the host's
# /etc/docker/daemon.json, and ARENA_REQUIRE_RUNSC=1 tells the tests that it has runsc.
set -u
cd "$(dirname "$0")/.."

engine_answers() {
    .venv/bin/python -c "import docker; docker.from_env(timeout=5).ping()" >/dev/null 2>&1
}

pid=""
stop_engine() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        pid=""
    fi
}
trap stop_engine EXIT
trap 'stop_engine; exit 130' INT TERM

if ! engine_answers; then
    mkdir -p data/dockerd
    dockerd --config-file "$PWD/scripts/dockerd.json" >data/dockerd/dockerd.log 2>&1 </dev/null &
    pid=$!
    export ARENA_REQUIRE_RUNSC=1
    tries=0
    until engine_answers; do
        tries=$((tries + 1))
        if [ "$tries" -gt 60 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "dockerd did not start; see data/dockerd/dockerd.log" >&2
            tail -20 data/dockerd/dockerd.log >&2
            exit 1
        fi
        sleep 1
    done
fi

"$@"

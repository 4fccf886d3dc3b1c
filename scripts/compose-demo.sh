#!/bin/sh
# The demo tournament on the compose stack: services and workers in the background, the
# scheduler in the foreground (it prints the leaderboards), then everything taken down.
set -u
cd "$(dirname "$0")/.."
docker-compose up -d worker flower || exit 1
docker-compose run --rm scheduler
status=$?
docker-compose logs --no-color worker >data/compose/workers.log 2>&1
docker-compose down -v
exit $status

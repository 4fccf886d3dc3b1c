#!/bin/sh
# The demo tournament on the compose stack: services and workers in the background, the
# scheduler in the foreground (it prints the leaderboards), then everything taken down.
set -u
cd "$(dirname "$0")/.."
docker-compose up -d worker flower web || exit 1
docker-compose run --rm scheduler
status=$?
# The web service reads the same database: its attack leaderboard, as JSON.
docker-compose exec -T web python3 -c \
    "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/api/leaderboards/attack').read().decode())" \
    || status=1
docker-compose logs --no-color worker >data/compose/workers.log 2>&1
docker-compose down -v
exit $status

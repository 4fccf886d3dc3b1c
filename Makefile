# The two commands of the README, and their parts.
.PHONY: setup images app compose-demo hosts demo demo-real test

setup:
	scripts/setup.sh

images: setup
	scripts/with-docker.sh .venv/bin/arena images build

# The platform's own image, for docker-compose.yml and worker hosts.
app: setup
	scripts/with-docker.sh sh -c '.venv/bin/arena images build python services && .venv/bin/arena images app'

# The demo tournament inside the compose stack (Debian's docker-compose, installed when missing).
compose-demo: app
	command -v docker-compose >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose
	rm -rf data/compose
	scripts/with-docker.sh scripts/compose-demo.sh

# Three hosts on this one machine that share nothing but PostgreSQL, Redis, an S3 store and a
# registry: intake on this engine, workers on two private engines (one killed mid-run).
hosts: setup
	ARENA_REQUIRE_DOCKER=1 scripts/with-docker.sh .venv/bin/pytest -p no:randomly -v tests/test_distributed.py -k three_hosts

# A whole tournament from nothing: base images, a synthetic dataset, the sample submissions.
demo: setup
	rm -rf data/demo
	ARENA_DATA_DIR=data/demo scripts/with-docker.sh .venv/bin/arena demo
	ARENA_DATA_DIR=data/demo .venv/bin/arena export data/demo/results

# The real-model study on 160 ImageNet photos (the source document's count) from ../shared (resumable: keeps data/real).
demo-real: setup
	ARENA_DATA_DIR=data/real scripts/with-docker.sh .venv/bin/arena study --images 160

test: setup
	ARENA_REQUIRE_DOCKER=1 scripts/with-docker.sh .venv/bin/pytest -n 3 --dist loadfile

# The two commands of the README, and their parts.
.PHONY: setup images demo test

setup:
	scripts/setup.sh

images: setup
	scripts/with-docker.sh .venv/bin/arena images build

# A whole tournament from nothing: base images, a synthetic dataset, the sample submissions.
demo: setup
	rm -rf data/demo
	ARENA_DATA_DIR=data/demo scripts/with-docker.sh .venv/bin/arena demo

test: setup
	ARENA_REQUIRE_DOCKER=1 scripts/with-docker.sh .venv/bin/pytest -q

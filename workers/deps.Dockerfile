# arena/app-deps: Arena's Python dependencies, the layer arena/app is built on (workers/Dockerfile).
# Built by `arena images app` when the dependency list in pyproject.toml changes: the host's
# pip installs them into deps/ (wheels for CPython 3.11, the base image's Python), so nothing
# is downloaded while the image builds and no registry is needed.
FROM arena/python:bookworm
COPY deps/ /opt/arena/deps/

# The box's image for compose.yaml (recorder, trigger, worker, web): Python 3.11 on Debian 12 plus ffmpeg,
# the same pieces a Raspberry Pi OS box runs. Redis runs from its own image.
FROM python:3.11-slim-bookworm

# fonts-dejavu-core: the synthetic camera draws its wall clock with DejaVu Sans.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Exactly the box's lock (every file checked against its hash), then the package without resolving.
COPY requirements/box.txt ./requirements/box.txt
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements/box.txt
COPY pyproject.toml README.md supervisord.conf ./
COPY requirements ./requirements
COPY common ./common
COPY recorder ./recorder
COPY trigger ./trigger
COPY worker ./worker
COPY ops ./ops
COPY deploy ./deploy
COPY assets ./assets
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && pip check

# A plain user in the video group (USB webcams); uid 1000 matches the tmpfs buffer's owner in compose.yaml.
RUN useradd --system --uid 1000 --gid users --groups video --home-dir /app gravanois \
    && mkdir -p /data /buffer && chown gravanois:users /data /buffer
USER gravanois

ENV GN_DATA_DIR=/data \
    GN_BUFFER_DIR=/buffer \
    GN_WM_LOGO=/app/assets/logo.png \
    PYTHONUNBUFFERED=1
CMD ["gravanois", "--help"]

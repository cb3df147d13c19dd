# imagine-bot on an NVIDIA GPU. Run with the NVIDIA container toolkit:
#   docker build -t imagine-bot .
#   docker run --gpus all -e DISCORD_TOKEN=... -v ./config.toml:/config/config.toml:ro \
#     -v imagine-data:/data -v imagine-models:/models imagine-bot
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HOME=/models/hf
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 imagine \
    && mkdir -p /app /data /models /config && chown imagine:imagine /app /data /models
WORKDIR /app
COPY --chown=imagine:imagine pyproject.toml README.md ./
COPY --chown=imagine:imagine bot ./bot
COPY --chown=imagine:imagine engine ./engine
USER imagine
RUN python3 -m venv /app/.venv \
    && /app/.venv/bin/pip install "torch==2.13.0" \
    && /app/.venv/bin/pip install .
ENV PATH=/app/.venv/bin:$PATH

# Images and the SQLite database; downloaded and built models. Point config.toml at them:
#   [storage] path = "/data"    [engine] cache_dir = "/models"
VOLUME ["/data", "/models"]
# The Vary (Region) editor, when [web] public_url is set (with listen = "0.0.0.0:8080" inside the
# container; publish it to the host's loopback, behind your HTTPS proxy: -p 127.0.0.1:8080:8080).
EXPOSE 8080
CMD ["imagine-bot", "run", "--config", "/config/config.toml"]

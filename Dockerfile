# taskapi on waitress. Build: docker build -t taskapi .
# Schema once per database: docker run --rm --env-file .env taskapi flask --app taskapi init-db
# Serve: docker run --env-file .env -p 8000:8000 taskapi
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 taskapi \
    && useradd --system --uid 10001 --gid taskapi taskapi
WORKDIR /app

COPY setup.cfg pyproject.toml README.md schema.sql wsgi.py ./
COPY taskapi ./taskapi
# init-db records these as applied, and `flask --app taskapi db upgrade` applies new ones.
COPY migrations ./migrations
# Editable, because schema.sql (read by init-db) sits beside the package, not inside it.
RUN pip install --no-cache-dir --editable . \
    && mkdir instance \
    && chown taskapi:taskapi instance

# Numeric, so a runtime can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
# DATABASE_URL defaults to SQLite in /app/instance (mount a volume there to keep it);
# production passes a postgresql:// URL, BETTER_AUTH_SECRET and CORS_ORIGINS at run time.
# wsgi.py, not waitress-serve: it applies the service's own server settings (body and
# connection limits, request timeout, proxy headers; taskapi/edge.py). Two processes, not one a
# core: a container sees all of the host's cores, whatever its CPU limit, and each process may
# hold DB_POOL_SIZE + DB_MAX_OVERFLOW (15) database connections. Eight threads each stay within.
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["python", "wsgi.py", "--listen=0.0.0.0:8000", "--workers=2", "--threads=8"]

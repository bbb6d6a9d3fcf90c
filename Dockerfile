# syntax=docker/dockerfile:1
# Build: dependencies from the lock file, then the project, into /opt/venv.
FROM python:3.11-slim AS build
ENV UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY docs/websockets.md ./docs/websockets.md
RUN uv sync --frozen --no-dev --no-editable

# Run: no build tools, a non-root user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 hotline
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOTLINE_DATA_DIR=/home/hotline/data
USER hotline
WORKDIR /home/hotline
EXPOSE 8000
# Migrations are a separate step: `docker run <image> migrate`.
ENTRYPOINT ["hotline"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

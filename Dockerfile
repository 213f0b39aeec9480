# The defectloop API and worker image (used by docker-compose.yml).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ml ml
COPY labelstudio labelstudio
COPY backend backend
COPY migrations migrations
COPY alembic.ini ./
RUN pip install .
RUN useradd --create-home defectloop && mkdir -p /var/lib/defectloop && chown defectloop /var/lib/defectloop
USER defectloop
EXPOSE 8000
CMD ["defectloop", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-workers"]

# The project's image: one image for every command (worker, topics, produce).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY schemas ./schemas
# The rollup config the workers run and the query API answers from (RUM_ROLLUPS_CONFIG).
COPY config ./config
# Editable install: the JSON Schemas are read from /app/schemas at run time.
RUN pip install --no-cache-dir -e . && useradd --create-home rum && mkdir -p /var/lib/rum-pipeline \
    && chown rum /var/lib/rum-pipeline
USER rum
CMD ["rum-pipeline", "worker"]

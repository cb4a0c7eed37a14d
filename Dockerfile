# One image for every process: api, worker, beat and the one-shot migrate.
FROM python:3.11-slim

# OpenCV's wheel needs libGL and GLib at import time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY api ./api
COPY worker ./worker
COPY db ./db
COPY scenecap ./scenecap
COPY migrations ./migrations
# The versions the test suite passed with (make constraints).
RUN pip install --no-cache-dir -c constraints.txt ".[monitoring,speech]"

RUN useradd --create-home --uid 10001 scenecap
USER scenecap
ENV SCENECAP_ENVIRONMENT=production PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["scenecap", "api", "--host", "0.0.0.0", "--port", "8000"]

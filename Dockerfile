# One image for every process: api, worker, beat and the one-shot migrate.
FROM python:3.11-slim

# OpenCV's wheel needs libGL and GLib at import time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The dependencies first, in a layer of their own: a change to the code does not reinstall
# OpenCV, numpy and PyAV. The versions are the ones the test suite passed with (make
# constraints).
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + [d for e in ('monitoring', 'speech') \
for d in p['optional-dependencies'][e]]))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt
COPY README.md alembic.ini ./
COPY api ./api
COPY worker ./worker
COPY db ./db
COPY scenecap ./scenecap
COPY migrations ./migrations
RUN pip install --no-cache-dir --no-deps -c constraints.txt ".[monitoring,speech]"

RUN useradd --create-home --uid 10001 scenecap
USER scenecap
ENV SCENECAP_ENVIRONMENT=production PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["scenecap", "api", "--host", "0.0.0.0", "--port", "8000"]

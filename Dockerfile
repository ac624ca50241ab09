# rowgate's server image: `rowgate serve` over MCP Streamable HTTP on :8080 (/mcp, /healthz,
# /readyz), run as a fixed non-root uid. docker-compose.yml builds it for the `migrate` step
# and the replicas; tests/test_compose.py checks what this file promises.
#
#   docker build -t rowgate .
#   docker run --rm rowgate --help
#
# Pinned to an exact Python release; bump it (and rebuild) for Python's security fixes.
ARG PYTHON_IMAGE=python:3.12.15-slim-bookworm

# --- build: install rowgate and its pinned dependencies into /opt/rowgate ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# A venv without pip of its own: the base image's pip installs into it, so the final image
# carries no installer in /opt/rowgate.
RUN python -m venv --without-pip /opt/rowgate
WORKDIR /src
# .dockerignore lets in only what the wheel is built from (no .git, .venv, .env, deploy/).
COPY . .
# Exact versions from constraints.txt, the runtime dependencies only (no dev extra). Every
# dependency ships manylinux wheels, so nothing is compiled and no compiler is needed.
RUN pip --python /opt/rowgate/bin/python install -c constraints.txt . \
 && /opt/rowgate/bin/rowgate --version

# --- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="rowgate" \
      org.opencontainers.image.description="MCP server: agents read and change Postgres data as the user they act for; RLS decides." \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/rowgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed uid/gid (10001), so volume permissions and Kubernetes' runAsNonRoot can rely on it.
RUN groupadd --system --gid 10001 rowgate \
 && useradd --system --uid 10001 --gid rowgate --home-dir /home/rowgate --create-home \
      --shell /usr/sbin/nologin rowgate
COPY --from=build /opt/rowgate /opt/rowgate
WORKDIR /home/rowgate
USER 10001:10001
EXPOSE 8080
# Liveness only (is the process serving HTTP?); readiness is GET /readyz, which
# docker-compose.yml and the load balancer check. No curl in a slim image: Python's urllib.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["rowgate"]
CMD ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8080"]

# otel-mcp, the server: the image docker-compose.scale-out.yml runs as its replicas.
#   docker build -t otel-mcp .
#   docker run --rm -e OTEL_MCP_DB=postgresql://... -e OTEL_MCP_AUTH_TOKEN=... -p 127.0.0.1:8000:8000 otel-mcp
FROM python:3.11-slim
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
# Not root. The data, state and cache folders exist in the image, owned by its user, so that a volume mounted
# on one (docker-compose.scale-out.yml mounts the cache) starts with that owner instead of root.
RUN useradd --create-home --uid 10001 otel-mcp \
    && mkdir -p /home/otel-mcp/.cache/otel-mcp /home/otel-mcp/.local/state/otel-mcp /home/otel-mcp/.local/share/otel-mcp \
    && chown -R otel-mcp:otel-mcp /home/otel-mcp
USER otel-mcp
ENV OTEL_MCP_TRANSPORT=http OTEL_MCP_HOST=0.0.0.0 OTEL_MCP_PORT=8000
EXPOSE 8000
ENTRYPOINT ["otel-mcp"]
CMD ["serve"]

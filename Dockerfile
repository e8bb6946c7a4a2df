# The bridge (target `bridge`, the default) and a pinned LLMFlow for the compose file
# (target `llmflow`). Build: docker build -t claude-code-llmflow-bridge .
# Extra CA certificates (PEM text) for builds behind a TLS-inspecting proxy, which npm would
# otherwise refuse (SELF_SIGNED_CERT_IN_CHAIN): EXTRA_CA_CERTS="$(cat ca.pem)" docker compose build,
# or docker build --build-arg EXTRA_CA_CERTS="$(cat ca.pem)" .
ARG EXTRA_CA_CERTS=""

FROM node:20-bookworm-slim AS build
ARG EXTRA_CA_CERTS
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages packages
COPY services services
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" > /tmp/extra-ca.pem; export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; fi \
  && npm ci --no-audit --no-fund && npm run build && npm rebuild --silent @ccbridge/bridge \
  && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS llmflow
ARG EXTRA_CA_CERTS
# LLMFlow 0.4.1 runs on Bun (shipped by the `bun` npm package); it needs `uuid` beside it.
# The same versions as the tests' peers (test/peers/package.json; a test holds them equal).
WORKDIR /opt/llmflow
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" > /tmp/extra-ca.pem; export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; fi \
  && npm init -y >/dev/null && npm install --no-audit --no-fund llmflow@0.4.1 bun@1.4.5 uuid@14.0.3 \
  && mkdir -p /data && chown node:node /data
USER node
ENV DASHBOARD_PORT=3000 PROXY_PORT=8080 DATA_DIR=/data
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:3000/api/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node_modules/.bin/bun", "run", "node_modules/llmflow/src/server.ts"]

FROM node:20-bookworm-slim AS bridge
# npx ccbridge … in the container: no npm update check on the way.
ENV NODE_ENV=production NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
COPY --from=build /app /app
USER node
# OTLP/HTTP and OTLP/gRPC (ingest roles); /metrics, /healthz and /readyz (every role).
EXPOSE 4318 4317 9464
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.BRIDGE_METRICS_PORT||9464)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "services/bridge/dist/main.js"]

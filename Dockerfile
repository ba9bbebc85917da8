# syntax=docker/dockerfile:1
#
# Terapi image: one binary, the role is the command (serve | api | worker | migrate).
#   docker build -t terapi .
#   docker run -p 3003:3003 -v terapi-data:/data terapi            # embedded mode (PGlite and redis-server in /data)
#   docker run terapi migrate                                       # with DATABASE_URL etc. set
# docker-compose.yml runs the scaled-out shape (postgres, redis, migrate, api, worker).

# ---- build: compile TypeScript to dist/ --------------------------------------------------------
FROM node:26-bookworm-slim AS build
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# tsc does not copy non-TS files; the provider catalog is read next to the compiled catalog module.
RUN npm run build \
 && cp src/providers/catalog.yaml dist/providers/catalog.yaml

# ---- runtime: production dependencies + compiled output only ------------------------------------
FROM node:26-bookworm-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production

# Embedded mode (no REDIS_URL) runs redis-server as a child process; with REDIS_URL it stays unused.
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*

# Owned by root and read-only for the `node` user that runs the server.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# migrations/ and package.json are resolved relative to the package root (dist/../).
COPY migrations ./migrations
COPY --from=build /app/dist ./dist

# The data directory: embedded PGlite database, generated keys. Must be writable by `node`.
RUN mkdir -p /data && chown node:node /data && chmod 700 /data
VOLUME ["/data"]

ENV HOST=0.0.0.0 \
    PORT=3003 \
    TERAPI_DATA_DIR=/data \
    NODE_OPTIONS="--enable-source-maps --max-semi-space-size=64"

USER node
EXPOSE 3003

# Slim images have no curl: use node's fetch. Only meaningful for roles that listen (serve, api);
# docker-compose.yml overrides it for the worker.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3003)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve"]

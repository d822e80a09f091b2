# syntax=docker/dockerfile:1
# The Gatehouse image: every component (gateway, authority, CA, control plane,
# sidecar, run: services) from one image, chosen by the command's arguments
# (`gatehouse export k8s --image` refers to it).
#
#   docker build -t gatehouse:0.1.0 .
#
# Pin the base by digest for a reproducible, reviewable build (the tag moves):
#   docker buildx imagetools inspect node:24-bookworm-slim   # prints the digest
#   docker build --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:<digest> -t gatehouse:0.1.0 .
# Both stages use the same base, so the native modules built or fetched in the
# first match the runtime of the second.
ARG NODE_IMAGE=node:24-bookworm-slim

# --- dependencies: production only, exactly the lock file ---------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# --- runtime -----------------------------------------------------------------
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    HOME=/tmp \
    NODE_OPTIONS=--disable-warning=ExperimentalWarning
WORKDIR /app
# npm, corepack and yarn are not needed to run: less to exploit
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn* \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg \
 && mkdir -p /var/lib/gatehouse /srv/topology \
 && chown 10001:10001 /var/lib/gatehouse
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --chown=0:0 package.json package-lock.json ./
COPY --chown=0:0 bin ./bin
COPY --chown=0:0 src ./src
COPY --chown=0:0 examples ./examples
# A numeric, non-root user that owns nothing of the code (read-only root file
# system compatible: it writes only to /tmp and the state dir, both volumes in
# the exported manifests).
USER 10001:10001
VOLUME ["/var/lib/gatehouse"]
# Exec form throughout: no shell is needed at run time.
ENTRYPOINT ["node", "/app/src/cli/main.ts"]
CMD ["--help"]
# A component's loopback admin /healthz (set GATEHOUSE_HEALTH_URL to the
# component's --admin-listen; Kubernetes uses the manifests' probes instead).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.GATEHOUSE_HEALTH_URL || 'http://127.0.0.1:9901/healthz', { signal: AbortSignal.timeout(2500) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

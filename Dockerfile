# pgfloat container image: build with the dev toolchain, run with production dependencies only, as a non-root user.
# docker build -t pgfloat . && docker run -v /etc/pgfloat:/etc/pgfloat:ro -p 6432:6432 -p 6433:6433 pgfloat

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
# `npm ci` runs the `prepare` script, which compiles TypeScript into dist/.
RUN npm ci --no-audit --no-fund

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
RUN groupadd --system pgfloat && useradd --system --gid pgfloat --home-dir /var/lib/pgfloat --shell /usr/sbin/nologin pgfloat \
 && mkdir -p /var/lib/pgfloat /etc/pgfloat && chown pgfloat:pgfloat /var/lib/pgfloat
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY package.json ./
COPY config ./config
USER pgfloat
# Point state.dir at /var/lib/pgfloat (a volume) in /etc/pgfloat/pgfloat.yaml.
VOLUME ["/var/lib/pgfloat"]
EXPOSE 6432 6433 8008
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["start", "--config", "/etc/pgfloat/pgfloat.yaml"]

# Two images from one file. The default (last) stage, `production`, ships no development tools:
# not the local stack, the demo walkthroughs or the demo seed (rrpd/dev), nor the PagerDuty
# simulator (pagerduty_sim); its `rrpd` has no `run`, `demo` or `pagerduty-sim` command (they
# are added only when rrpd.dev is installed). The `dev` stage keeps them, for the simulator
# service of docker-compose.yml.
FROM python:3.11-slim AS base
WORKDIR /app
ENV PYTHONUNBUFFERED=1
RUN useradd --system rrpd

FROM base AS dev
COPY . /app
RUN pip install --no-cache-dir . && mkdir -p /app/var && chown rrpd /app/var
USER rrpd
CMD ["rrpd", "--help"]

FROM base AS production
COPY . /app
RUN rm -rf rrpd/dev pagerduty_sim tests bench \
    && pip install --no-cache-dir . && mkdir -p /app/var && chown rrpd /app/var
USER rrpd
ENV RRPD_ENV=production
CMD ["rrpd", "--help"]

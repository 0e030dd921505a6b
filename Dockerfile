FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir . && useradd --system rrpd && mkdir -p /app/var && chown rrpd /app/var
USER rrpd
ENV RRPD_ENV=production PYTHONUNBUFFERED=1
CMD ["rrpd", "--help"]

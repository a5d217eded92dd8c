#!/bin/sh
# One-shot (the minio-init service): create MLflow's artifact bucket in MinIO.
# Idempotent, so `docker compose up` may run it any number of times.
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"
bucket="${MLFLOW_BUCKET:-mlflow}"
endpoint="${MINIO_ENDPOINT:-http://minio:9000}"

mc alias set harness "$endpoint" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "harness/$bucket"
echo "minio-init: bucket '$bucket' ready at $endpoint"

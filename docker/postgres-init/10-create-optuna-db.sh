#!/usr/bin/env bash
# Run by the postgres image on the first start of an empty data volume (and only then):
# the image itself creates POSTGRES_DB (MLflow's backend store); this adds OPTUNA_DB, the
# Optuna study store, on the same server. Both are owned by POSTGRES_USER.
# With an existing volume, create it by hand:
#   docker compose exec postgres createdb -U "$POSTGRES_USER" "$OPTUNA_DB"
# (No `set -u` or `exit` here: the image sources scripts that are not executable.)
set -e

if [ -z "${OPTUNA_DB:-}" ]; then
    echo "10-create-optuna-db.sh: OPTUNA_DB is not set; no study-store database created" >&2
    false
fi

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v optuna_db="$OPTUNA_DB" <<'SQL'
SELECT format('CREATE DATABASE %I', :'optuna_db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'optuna_db')\gexec
SQL
echo "10-create-optuna-db.sh: database ${OPTUNA_DB} ready"

#!/bin/sh
# The `app-migrate` step of docker-compose.yml, run after `rowgate migrate` (which creates the
# roles, among them `authenticator`, without a password):
#
# 1. sets the password of `authenticator`, the login role of rowgate's pool, to
#    AUTHENTICATOR_PASSWORD, on every run, so a changed password in .env takes effect with
#    the next `docker compose up -d`;
# 2. applies $APP_MIGRATIONS_DIR/*.sql (deploy/migrations/ in the compose file) in name
#    order, each file once and in its own transaction, recording it in
#    rowgate.app_migrations. A failing file is rolled back and stops the run (and so the
#    deployment, whose replicas wait for this step to succeed); fix it and `up` again.
#
# Needs psql, ROWGATE_ADMIN_URL (an owner/superuser connection URL) and
# AUTHENTICATOR_PASSWORD. tests/test_compose.py runs it against a real PostgreSQL.
set -eu

: "${ROWGATE_ADMIN_URL:?ROWGATE_ADMIN_URL (an admin connection URL) is required}"
: "${AUTHENTICATOR_PASSWORD:?AUTHENTICATOR_PASSWORD is required}"
dir="${APP_MIGRATIONS_DIR:-/migrations}"
# Warnings and errors only: no "does not exist, skipping" notices of idempotent DDL.
PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
export PGOPTIONS

run_psql() {
    psql -X -q -v ON_ERROR_STOP=1 -d "$ROWGATE_ADMIN_URL" "$@"
}

# psql quotes the value itself (:'pw'), whatever characters the password holds.
run_psql -v pw="$AUTHENTICATOR_PASSWORD" <<'SQL'
ALTER ROLE authenticator PASSWORD :'pw';
CREATE TABLE IF NOT EXISTS rowgate.app_migrations (
  name text PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON rowgate.app_migrations FROM PUBLIC;
SQL
echo "app-migrate: authenticator password set"

applied=0
for file in "$dir"/*.sql; do
    [ -e "$file" ] || continue  # no .sql files: the pattern stays unexpanded
    name=$(basename "$file")
    done_before=$(run_psql -tA -v name="$name" <<'SQL'
SELECT count(*) FROM rowgate.app_migrations WHERE name = :'name';
SQL
)
    [ "$done_before" = "0" ] || continue
    echo "app-migrate: applying $name"
    # The file and its record commit together or not at all.
    run_psql --single-transaction -v name="$name" -f "$file" -f - <<'SQL'
INSERT INTO rowgate.app_migrations (name) VALUES (:'name');
SQL
    applied=$((applied + 1))
done
echo "app-migrate: $applied migration(s) applied from $dir"

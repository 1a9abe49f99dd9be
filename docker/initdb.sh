#!/usr/bin/env bash
# Postgres init script (runs once, on an empty data volume): the study database, the owner role
# the coordinator uses (creates the tables), and a least-privilege role for the workers: they read
# and write rows of the existing tables and use their sequences, and can create nothing.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v owner_pw="$SEARCH_OWNER_PASSWORD" -v worker_pw="$SEARCH_WORKER_PASSWORD" <<'SQL'
CREATE ROLE search_owner LOGIN PASSWORD :'owner_pw';
CREATE ROLE search_worker LOGIN PASSWORD :'worker_pw';
CREATE DATABASE search OWNER search_owner;
\connect search
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO search_owner;
GRANT USAGE ON SCHEMA public TO search_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE search_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO search_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE search_owner IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO search_worker;
SQL

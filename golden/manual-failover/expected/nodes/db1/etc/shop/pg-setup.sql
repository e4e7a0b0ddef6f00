-- Roles, database and replication slots for stack shop, run on the primary
-- by shop-pg-setup-primary (idempotent). Passwords arrive as psql
-- variables from the secrets file; they never appear in this file or the logs.
\set ON_ERROR_STOP on
SET log_statement = 'none';
SET log_min_duration_statement = -1;
-- In synchronous mode no replica exists yet when this first runs: do not wait for one.
SET synchronous_commit = local;
-- One physical slot per other DB node, so WAL is kept until each replica has it
-- (bounded by max_slot_wal_keep_size). Made before the replication role gets its
-- password: a replica that can log in as replicator finds its slot ready.
SELECT pg_create_physical_replication_slot('db2')
 WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'db2');

SELECT 'CREATE ROLE replicator WITH LOGIN REPLICATION'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') \gexec
ALTER ROLE replicator WITH LOGIN REPLICATION PASSWORD :'replication_password';
-- The exporters on the monitoring node: statistics only.
SELECT 'CREATE ROLE monitor WITH LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitor') \gexec
ALTER ROLE monitor WITH LOGIN NOSUPERUSER CONNECTION LIMIT 5 PASSWORD :'monitor_password';
GRANT pg_monitor TO monitor;

SELECT 'CREATE ROLE app WITH LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') \gexec
ALTER ROLE app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'app_password';

SELECT 'CREATE DATABASE app OWNER app'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app') \gexec
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE app TO app;

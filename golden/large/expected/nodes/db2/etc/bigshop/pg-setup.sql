-- Roles, database and replication slots for stack bigshop, run on the primary
-- by bigshop-pg-setup-primary (idempotent). Passwords arrive as psql
-- variables from the secrets file; they never appear in this file or the logs.
\set ON_ERROR_STOP on
SET log_statement = 'none';
SET log_min_duration_statement = -1;
-- In synchronous mode no replica exists yet when this first runs: do not wait for one.
SET synchronous_commit = local;
-- Patroni made the replication role and manages one slot per member.

SELECT 'CREATE ROLE replicator WITH LOGIN REPLICATION'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') \gexec
ALTER ROLE replicator WITH LOGIN REPLICATION PASSWORD :'replication_password';
-- pg_rewind's role: Patroni makes it with a new cluster; a cluster converted to Patroni gets it here.
SELECT 'CREATE ROLE rewinder WITH LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rewinder') \gexec
ALTER ROLE rewinder WITH LOGIN NOSUPERUSER PASSWORD :'rewind_password';
GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean), pg_catalog.pg_stat_file(text, boolean),
  pg_catalog.pg_read_binary_file(text), pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)
  TO rewinder;
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

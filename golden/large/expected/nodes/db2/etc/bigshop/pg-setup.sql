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

SELECT 'CREATE ROLE app WITH LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') \gexec
ALTER ROLE app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'app_password';

SELECT 'CREATE DATABASE app OWNER app'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app') \gexec
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE app TO app;

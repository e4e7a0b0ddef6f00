"""The configuration each service really runs with: includes followed inside the node's
tree, and the value the service uses when a name is set twice (the last one for
PostgreSQL, Redis and nginx; the first for sshd).

A node's files sit under nodes/<node>/ as they will on the node, so an include of
/etc/x names nodes/<node>/etc/x. An include lint cannot follow - outside the node's
tree, or a file that does not exist - is recorded as `Unseen` (HAL320 reports it),
except the secret-bearing files `halgen build` writes and a few files Debian's
packages install."""

from halgen.lint.effective.firewall import firewall
from halgen.lint.effective.nginx import nginx_all, nginx_directives, nginx_included_errors, nginx_unseen
from halgen.lint.effective.paths import Unseen, build_template, build_written, designed
from halgen.lint.effective.postgres import PgConfig, hba_entries, hba_files, pg
from halgen.lint.effective.redis import RedisConfig, redis
from halgen.lint.effective.sshd import SshdEntry, sshd

__all__ = ["PgConfig", "RedisConfig", "SshdEntry", "Unseen", "build_template", "build_written", "designed", "firewall",
           "hba_entries", "hba_files", "nginx_all", "nginx_directives", "nginx_included_errors", "nginx_unseen", "pg",
           "redis", "sshd"]

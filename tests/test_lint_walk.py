"""Lint reads each config as its service does: includes followed (globs, loops, relative
paths), the value that takes effect, ufw's whole grammar run in order. Small repos
written here; tests/test_lint.py's mutations cover the same on the golden repos."""

from __future__ import annotations

import subprocess
from pathlib import Path

from halgen.formats import ufw
from halgen.lint import effective, lint
from halgen.lint.repo import Repo


def _repo(root: Path, files: dict[str, str]) -> Repo:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Repo(root)


# --- ufw ---------------------------------------------------------------------------------


def test_ufw_runs_commands_in_order() -> None:
    state = ufw.firewall("""ufw --force reset
ufw default deny incoming
ufw allow proto tcp from 10.0.0.5/32 to any port 5432 comment 'peer'
ufw allow 6379/tcp
ufw insert 1 allow in on eth0 to any port 8080
ufw prepend deny from 192.0.2.1
ufw delete allow 6379/tcp
ufw allow out 25
ufw --dry-run allow 9999
sudo ufw --force enable && ufw limit OpenSSH
""")
    assert [(r.action, r.source, r.ports[:2], r.interface) for r in state.rules] == [
        ("deny", "192.0.2.1", ufw.ALL_PORTS[:2], ""), ("allow", "any", (8080,), "eth0"),
        ("allow", "10.0.0.5/32", (5432,), ""), ("limit", "any", (22,), "")]
    assert state.enabled == (True, 10) and state.defaults["incoming"] == ("deny", 2)


def test_ufw_delete_by_number_reset_and_disable() -> None:
    state = ufw.firewall("ufw allow 80\nufw allow 443\nufw delete 1\nufw enable\n")
    assert [r.ports for r in state.allows] == [(443,)]
    assert not ufw.firewall("ufw enable\nufw disable\n").enabled[0]
    reset = ufw.firewall("ufw default allow incoming\nufw allow 22\nufw enable\nufw --force reset\n")
    assert reset.rules == [] and not reset.enabled[0] and reset.defaults["incoming"] == ("deny", 4)


def test_ufw_names_and_source_ports() -> None:
    ports = {words: ufw.firewall(f"ufw allow {words}").allows[0].ports
             for words in ("'Nginx Full'", "OpenSSH", "postgresql", "SomeProfile", "from 10.0.0.0/8 port 53",
                           "route allow proto tcp to any port 5432")}
    assert ports["'Nginx Full'"] == (80, 443) and ports["OpenSSH"] == (22,) and ports["postgresql"] == (5432,)
    assert ports["SomeProfile"] == ufw.ALL_PORTS, "an unknown profile may open anything"
    assert ports["from 10.0.0.0/8 port 53"] == ufw.ALL_PORTS, "a source port does not narrow the destination"
    assert ufw.firewall("ufw route allow proto tcp to any port 5432").allows[0].route


# --- includes ---------------------------------------------------------------------------------


def test_postgresql_includes_where_they_stand(tmp_path: Path) -> None:
    main = "nodes/db1/etc/postgresql/15/main"
    repo = _repo(tmp_path, {
        f"{main}/postgresql.conf": "port = 5432\ninclude 'a.conf'\nlisten_addresses = '10.0.0.20'\n"
                                   "include_dir 'conf.d'\ninclude_if_exists '/srv/pg/x.conf'\n"
                                   "hba_file = 'hba/other.conf'\ndata_directory = '/etc/postgresql/15/main'\n",
        f"{main}/a.conf": "listen_addresses = '*'\nport = 5433\ninclude 'a.conf'\n",  # a loop, and overridden
        f"{main}/conf.d/20-b.conf": "work_mem = '8MB'\n",
        f"{main}/conf.d/10-a.conf": "work_mem = '4MB'\nmax_connections = 10\n",
        f"{main}/conf.d/.hidden.conf": "max_connections = 1\n",
        f"{main}/conf.d/30-c.txt": "max_connections = 2\n",
        f"{main}/hba/other.conf": "host all all 0.0.0.0/0 trust\n",
    })
    config = effective.pg(repo, f"{main}/postgresql.conf")
    values = {name: (s.value, s.file.rsplit("/", 1)[1]) for name, s in config.settings.items()}
    assert values["listen_addresses"] == ("10.0.0.20", "postgresql.conf")
    assert values["port"] == ("5433", "a.conf")
    assert values["work_mem"] == ("8MB", "20-b.conf") and values["max_connections"] == ("10", "10-a.conf")
    assert config.hba == f"{main}/hba/other.conf", "relative to the data directory"
    assert [(u.directive, u.target) for u in config.unseen] == [("include_if_exists", "/srv/pg/x.conf")]
    assert effective.hba_files(repo) == [f"{main}/hba/other.conf"]


def test_redis_last_wins_through_glob_includes(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {
        "nodes/r1/etc/redis/redis.conf": "bind 10.0.0.30\ninclude /etc/redis/secrets.conf\n"
                                         "include /etc/redis/conf.d/*.conf\n",
        "nodes/r1/etc/redis/conf.d/a.conf": "bind 0.0.0.0\ninclude /etc/redis/conf.d/*.conf\n",
        "nodes/r1/etc/redis/conf.d/b.conf": "bind 10.0.0.31\nuser default on nopass ~* +@all\n",
    })
    config = effective.redis(repo, "nodes/r1/etc/redis/redis.conf")
    bind = config.last("bind")
    assert bind is not None and bind.args == ("10.0.0.31",) and bind.file.endswith("b.conf")
    assert [d.args[0] for d in config.secret_includes] == ["/etc/redis/secrets.conf"], "halgen build writes it"
    assert config.unseen == []


def test_nginx_includes_loops_and_relative_paths(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {
        "nodes/lb1/etc/nginx/nginx.conf": "events {}\nhttp {\n    include conf.d/*.conf;\n"
                                          "    include /etc/nginx/mime.types;\n    include /opt/x.conf;\n}\n",
        "nodes/lb1/etc/nginx/conf.d/a.conf": "server {\n    listen 80;\n    include /etc/nginx/conf.d/*.conf;\n"
                                             "    location /m { alias /srv/m/; autoindex on; }\n}\n",
    })
    found = {(d.name, d.file.rsplit("/", 1)[1], d.context) for d in
             effective.nginx_directives(repo, "nodes/lb1/etc/nginx/nginx.conf")}
    assert ("autoindex", "a.conf", "location") in found and ("listen", "a.conf", "server") in found
    unseen = effective.nginx_unseen(repo, "nodes/lb1/etc/nginx/nginx.conf")
    assert [u.target for u in unseen] == ["/opt/x.conf"], "mime.types is Debian's"
    rules = {f.rule for f in lint(tmp_path, tools=False, select={"HAL303", "HAL320", "HAL322"}).findings}
    assert rules == {"HAL303", "HAL320", "HAL322"}


def test_sshd_first_value_and_match_blocks(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {
        "nodes/n1/etc/ssh/sshd_config.d/50-a.conf": "PasswordAuthentication no\nMatch User ops\n"
                                                    "    Include /etc/ssh/extra.conf\nMatch all\nPermitRootLogin no\n",
        "nodes/n1/etc/ssh/sshd_config.d/10-b.conf": "PermitRootLogin yes\n",
        "nodes/n1/etc/ssh/extra.conf": "PasswordAuthentication yes\nMatch Address 10.0.0.0/8\nX11Forwarding yes\n",
    })
    entries, _ = effective.sshd(repo, "n1")
    assert [(e.key, e.value, e.match) for e in entries] == [
        ("permitrootlogin", "yes", ""), ("passwordauthentication", "no", ""),
        ("passwordauthentication", "yes", "User ops"), ("x11forwarding", "yes", "Address 10.0.0.0/8"),
        ("permitrootlogin", "no", "")]
    messages = [f.message for f in lint(tmp_path, tools=False, select={"HAL313"}).findings]
    assert any("permitrootlogin is yes" in m for m in messages), "the first value wins"
    assert any("'Match User ops'" in m for m in messages), "a Match block in an included file"


# --- tracked files and sudo ----------------------------------------------------------------------


def test_git_tracked_secrets_are_linted(tmp_path: Path) -> None:
    _repo(tmp_path, {".gitignore": "/secrets/\n/build/\n", "secrets/secrets.env": "PG_PASSWORD=abcdefgh12345\n",
                     "build/untracked.env": "PG_PASSWORD=abcdefgh12345\n"})
    assert lint(tmp_path, tools=False, select={"HAL311", "HAL312"}).findings == [], "not a git repo: skipped"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-f", "secrets/secrets.env"], check=True)
    found = {(f.rule, f.file) for f in lint(tmp_path, tools=False, select={"HAL311", "HAL312"}).findings}
    assert found == {("HAL311", "secrets/secrets.env"), ("HAL312", "secrets/secrets.env")}


def test_sudo_only_for_root_targets_of_service_users(tmp_path: Path) -> None:
    _repo(tmp_path, {
        "nodes/app1/etc/systemd/system/shop-app-5000.service": "[Service]\nUser=perlapp\n",
        "nodes/app1/etc/sudoers.d/ok": "perlapp ALL=(postgres) NOPASSWD: /usr/bin/psql\nops ALL=(ALL) ALL\n",
        "nodes/app1/etc/sudoers.d/bad": "%perlapp ALL=(ALL:ALL) ALL\n",
        "nodes/app1/cloud-init.yaml": "#cloud-config\nusers:\n- name: redis\n  groups: [sudo]\n",
    })
    found = sorted((f.file, f.line) for f in lint(tmp_path, tools=False, select={"HAL321"}).findings)
    assert found == [("nodes/app1/cloud-init.yaml", 3), ("nodes/app1/etc/sudoers.d/bad", 1)]


def test_redis_reads_what_halgen_build_writes(tmp_path: Path) -> None:
    _repo(tmp_path, {
        "nodes/r1/etc/redis/redis.conf": "bind 10.0.0.30\naclfile /etc/redis/users.acl\ninclude /etc/redis/secrets.conf\n",
        "nodes/r2/etc/redis/redis.conf": "bind 10.0.0.31\ninclude /etc/redis/secrets.conf\nrequirepass \"\"\n",
        "nodes/r3/etc/redis/redis.conf": "bind 10.0.0.32\nuser default off\nuser app on #" + "a" * 64 + " ~* +@all\n",
        "nodes/r4/etc/redis/redis.conf": "bind 10.0.0.33\nuser default on nopass ~* +@all\n",
    })
    config = effective.redis(Repo(tmp_path), "nodes/r1/etc/redis/redis.conf")
    assert [d.name for d in config.directives if not d.file][-2:] == ["masteruser", "masterauth"], "the secrets template"
    assert any(d.name == "user" and d.args[:2] == ("default", "off") for d in config.directives if not d.file)
    found = sorted((f.file.split("/")[1], f.line) for f in lint(tmp_path, tools=False, select={"HAL309"}).findings)
    assert found == [("r2", 3), ("r4", 2)]

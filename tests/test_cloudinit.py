"""Per-node cloud-init user-data: valid for cloud-init, within Linode's 16 KiB, carrying
exactly the repo's files; and Linode Cloud Firewalls that match the nodes' ufw rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from halgen.compiler import cloudinit, pipeline, secrets
from halgen.compiler.model import derive
from halgen.compiler.write import build, render

from conftest import GOLDEN, golden_cases, halgen, require, tree

LIMIT = 16384


def _expected_node_files(files: dict[str, bytes], node: str, role: str, app_root: str, has_repo: bool) -> dict:
    expected = {}
    for rel, content in files.items():
        parts = rel.split("/")
        if parts[0] == "build":
            parts = parts[1:]
        if parts[:2] == ["nodes", node] and parts[-1] not in cloudinit.NOT_ON_NODE:
            expected["/" + "/".join(parts[2:])] = content
        elif parts[0] == "app" and role == "app" and not has_repo:
            expected[f"{app_root}/releases/initial/" + "/".join(parts[1:])] = content
    return expected


def _check_document(path: Path, text: str, built: bool = True) -> None:
    raw = text.encode()
    assert text.startswith("#cloud-config\n"), path
    assert len(raw) <= LIMIT, f"{path}: {len(raw)} bytes"
    doc = YAML(typ="safe").load(text)
    assert isinstance(doc, dict) and doc["disable_root"] is True and doc["ssh_pwauth"] is False
    if built:
        payload = doc["write_files"][0]
        assert "encoding" not in payload and payload["path"].endswith(".b85"), "base85 text, decoded by the runcmd"
    else:
        assert "write_files" not in doc, f"{path}: the tracked part carries no files"


def _cloud_init_schema(paths: list[Path]) -> None:
    require("cloud-init")
    for path in paths:
        result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and "Valid cloud-config" in result.stdout, f"{path}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("case", golden_cases())
def test_tracked_user_data_is_the_readable_part_only(case: str) -> None:
    """The repo tracks users, packages and first-boot commands, never the node files (a
    derived copy that goes stale) and never a secret; cloud-init accepts it as it is."""
    expected_dir = GOLDEN / case / "expected"
    answers = pipeline.load_answers(GOLDEN / case / "answers.yml")
    stack = derive(answers)
    docs = sorted(expected_dir.glob("nodes/*/cloud-init.yaml"))
    assert [d.parent.name for d in docs] == sorted(n.name for n in stack.nodes)
    for doc in docs:
        text = doc.read_text()
        _check_document(doc, text, built=False)
        assert "content:" not in text and len(text.encode()) < 2048, doc
        assert f"/usr/local/sbin/{stack.project}-first-boot" in text
    _cloud_init_schema(docs)


@pytest.mark.parametrize("case", golden_cases())
def test_built_user_data_adds_the_secrets_and_stays_within_the_limit(case: str, tmp_path: Path,
                                                                     record_property) -> None:
    answers = pipeline.load_answers(GOLDEN / case / "answers.yml")
    repo = render(answers, tmp_path / "repo")
    # a local edit must travel in the pasteable document
    conf = next((repo / "nodes").glob("db1/etc/postgresql/*/main/postgresql.conf"))
    conf.write_text(conf.read_text() + "# local edit\n")
    build(repo, answers)
    stack = derive(answers)
    values = [v for v in secrets.read(repo).values() if v]
    docs = sorted((repo / "build" / "user-data").glob("*.yaml"))
    assert len(docs) == len(stack.nodes)
    sizes = {}
    for doc in docs:
        text = doc.read_text()
        _check_document(doc, text)
        sizes[doc.stem] = len(text.encode())
        node = next(n for n in stack.nodes if n.name == doc.stem)
        files = {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
                 if p.is_file() and p.relative_to(repo).parts[0] in ("nodes", "app", "build")
                 and "user-data" not in p.relative_to(repo).parts}
        carried = cloudinit.unpack(text)
        assert {p: c for p, (c, *_rest) in carried.items()} == _expected_node_files(
            files, node.name, node.role, stack.paths.app_root, bool(answers.app_repo))
        b64 = (doc.parent / f"{doc.name}.b64").read_text()
        assert "\n" not in b64 and __import__("base64").b64decode(b64).decode() == text
        if node.role == "db":  # the replication password, readable by its reader only
            secret_file, reader = ((f"/etc/{stack.project}/patroni-secrets.env", "root") if node.patroni
                                   else ("/var/lib/postgresql/.pgpass", "postgres"))
            content, owner, group, mode = carried[secret_file]
            assert (owner, group, mode) == (reader, reader, 0o600)
            assert any(v.encode() in content for v in values)
    assert b"# local edit" in cloudinit.unpack((repo / "build/user-data/db1.yaml").read_text())[
        next(p for p in cloudinit.unpack((repo / "build/user-data/db1.yaml").read_text()) if p.endswith("postgresql.conf"))][0]
    for tracked in tree(repo).values():
        assert not any(v.encode() in tracked for v in values)
    record_property("largest_user_data", max(sizes.items(), key=lambda kv: kv[1]))
    print(f"\n{case}: largest built user-data {max(sizes.values())} bytes ({LIMIT - max(sizes.values())} left)")
    _cloud_init_schema(docs)


def test_oversized_user_data_fails_the_compile_naming_node_and_size(tmp_path: Path) -> None:
    key = "ssh-ed25519 " + "A" * 900 + " k@k"
    admins = [{"name": f"admin{i}", "ssh_keys": [key] * 20} for i in range(3)]
    answers = tmp_path / "answers.yml"
    answers.write_text(json.dumps({"admins": admins}))
    result = halgen("render", str(answers), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert re.search(r"lb1: cloud-init user-data is \d+ bytes; Linode accepts at most 16384", result.stderr)
    assert not (tmp_path / "out").exists()


def test_the_most_app_servers_fit_every_nodes_user_data(tmp_path: Path) -> None:
    """Firewall and pg_hba peers are CIDR blocks, so 250 app servers (the schema's most)
    add a handful of lines to a DB or Redis node, not 250 (db1 was 16,786 bytes at 200)."""
    answers = tmp_path / "answers.yml"
    answers.write_text("vpc_subnet: 10.0.0.0/16\napp_servers: 250\npg_max_connections: 1300\nlb_tls: true\n"
                       "domains: [shop.example.com]\n")
    result = halgen("render", str(answers), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    hba = (tmp_path / "out/nodes/db1/etc/postgresql/15/main/pg_hba.conf").read_text()
    assert len(re.findall(r"^hostssl app ", hba, re.M)) <= 8


def _ufw_rules(script: str) -> set[tuple[str, str]]:
    return set(re.findall(r"^ufw allow proto tcp from (\S+) to any port (\S+) comment", script, re.M))


@pytest.mark.parametrize("case", golden_cases())
def test_cloud_firewalls_match_ufw_and_linode_limits(case: str) -> None:
    expected = GOLDEN / case / "expected"
    stack = derive(pipeline.load_answers(GOLDEN / case / "answers.yml"))
    for role in stack.roles:
        firewall = json.loads((expected / "firewalls" / f"{role}.json").read_text())
        rules = firewall["rules"]
        assert rules["inbound_policy"] == "DROP" and len(rules["inbound"]) <= 25
        allowed = set()
        for rule in rules["inbound"]:
            assert rule["protocol"] == "TCP" and len(rule["ports"].split(",")) <= 15
            assert 3 <= len(rule["label"]) <= 32
            for source in rule["addresses"]["ipv4"]:
                allowed.add(("any" if source == "0.0.0.0/0" else source, rule["ports"]))
        ufw = set()
        for node in stack.by_role[role]:
            script = (expected / "nodes" / node.name / "usr/local/sbin" / f"{stack.project}-first-boot").read_text()
            ufw |= _ufw_rules(script)
        assert ufw == allowed, role
        if role != "lb":
            assert ("any", "80,443") not in allowed, "only load balancers are open to the world"


APPLY = """
import sys, yaml
from cloudinit.config.cc_write_files import write_files
doc = yaml.safe_load(open(sys.argv[1]))
root = sys.argv[2]
files = [dict(f, path=root + f["path"]) for f in doc["write_files"]]
write_files("write_files", files, "root:root")
"""


def test_apply_user_data_with_cloud_init_into_a_throwaway_root(tmp_path: Path) -> None:
    """cloud-init's own write_files module writes the payload; the document's own runcmd
    tar command unpacks it; files land with their owners and modes."""
    require("cloud-init", "tar", "python3")
    import os

    if os.geteuid() != 0:
        pytest.skip("unpacking with owners needs root") if not __import__("conftest").IN_CI else pytest.fail("root")
    answers = pipeline.load_answers(GOLDEN / "default-ha" / "answers.yml")
    repo = render(answers, tmp_path / "repo")
    build(repo, answers)
    stack = derive(answers)
    # the document's runcmd makes the app user before unpacking; do the same, and undo it
    made_user = subprocess.run(["useradd", "--system", stack.a.app_user], capture_output=True).returncode == 0
    try:
        _apply_and_check(tmp_path, repo, ("db2", "redis1", "app1"))
    finally:
        if made_user:
            subprocess.run(["userdel", stack.a.app_user], capture_output=True)
    secrets_file = (tmp_path / "root-db2" / "etc/shop/patroni-secrets.env").stat()
    assert oct(secrets_file.st_mode & 0o777) == "0o600" and secrets_file.st_uid == 0
    assert (tmp_path / "root-app1" / "usr/local/sbin/shop-first-boot").stat().st_mode & 0o111


def _apply_and_check(tmp_path: Path, repo: Path, nodes: tuple[str, ...]) -> None:
    import grp
    import pwd

    for node in nodes:
        doc = repo / "build" / "user-data" / f"{node}.yaml"
        root = tmp_path / f"root-{node}"
        root.mkdir()
        applied = subprocess.run(["/usr/bin/python3", "-c", APPLY, str(doc), str(root)], capture_output=True, text=True)
        assert applied.returncode == 0, applied.stderr
        parsed = YAML(typ="safe").load(doc.read_text())
        # the runcmd's own decoder, with its two paths moved under the throwaway root
        unpack_cmd = next(c for c in parsed["runcmd"] if c[0] == "python3")
        code = unpack_cmd[2].replace("open('/", f"open('{root}/").replace("-C /'", f"-C {root}'")
        assert code.count(str(root)) == 2, unpack_cmd
        extracted = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True)
        assert extracted.returncode == 0, extracted.stderr
        for path, (content, owner, group, mode) in cloudinit.unpack(doc.read_text()).items():
            landed = root / path.lstrip("/")
            assert landed.read_bytes() == content, path
            st = landed.stat()
            assert (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o777) == \
                (owner, group, mode), path

"""A private app_repo over SSH: the app server clones it with the deploy key 'halgen build'
made and trusts only the answers' host keys. Real sshd and git in a network namespace of
the test's own (sshd on 127.0.0.1:22 there), the clone command as the first-boot script
has it, the key and known_hosts as the built user-data carries them."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
from pathlib import Path

import pytest

from halgen.compiler import cloudinit, deploykey, pipeline
from halgen.compiler.loader import from_mapping
from halgen.compiler.write import build, render

from conftest import IN_CI, bare_app_repo, git_sshd_config, require

pytestmark = pytest.mark.realserver


def _require() -> None:
    require("sshd", "ssh", "ssh-keygen", "git", "unshare", "ip")
    if os.geteuid() != 0:
        message = "needs root for a network namespace (unshare -n) and sshd on port 22 in it"
        pytest.fail(message) if IN_CI else pytest.skip(message)


def _host_key(tmp: Path) -> tuple[Path, str]:
    key = tmp / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = (key.with_suffix(".pub")).read_text().split()[:2]
    return key, f"127.0.0.1 {kind} {blob}"


def _stack(tmp: Path, bare: Path, host_key_line: str) -> tuple[dict, str]:
    """Render and build; app1's built files and its first-boot clone command."""
    answers = pipeline.complete_answers(from_mapping({
        "app_repo": f"{getpass.getuser()}@127.0.0.1:{bare}", "app_repo_host_keys": [host_key_line]}))
    repo = render(answers, tmp / "repo")
    build(repo, answers)
    text = (repo / "build" / "user-data" / "app1.yaml").read_text()
    files = cloudinit.unpack(text)
    boot = files[f"/usr/local/sbin/{answers.project}-first-boot"][0].decode()
    clone = re.search(r"^runuser -u \S+ -- (git clone .*?)$", boot.replace("\\\n", " "), re.M)
    assert clone, boot
    assert (repo / deploykey.DEPLOY_KEY).exists() and (repo / "secrets" / "deploy-key.pub").exists()
    return files, re.sub(r" {2,}", " ", clone[1])


def _node_etc(tmp: Path, files: dict, clone: str, known_hosts: str | None = None) -> str:
    """The node's deploy key and known_hosts under the test's directory; the clone
    command with the node's paths moved there."""
    etc = tmp / "etc"
    etc.mkdir()
    (etc / "deploy-key").write_bytes(files["/etc/perlstack/deploy-key"][0])
    (etc / "deploy-key").chmod(0o600)
    known = files["/etc/perlstack/git-known-hosts"][0].decode() if known_hosts is None else known_hosts
    (etc / "git-known-hosts").write_text(known)
    return clone.replace("/etc/perlstack/", f"{etc}/").replace("/srv/perlstack/releases/initial", "checkout")


def _serve_and_clone(tmp: Path, host_key: Path, authorized: str, clone: str) -> subprocess.CompletedProcess:
    config = git_sshd_config(tmp, "127.0.0.1:22", host_key, authorized)
    script = (f"set -e\nip link set lo up\n$(command -v sshd) -f {config} -E {tmp}/sshd.log\n"
              f"for i in $(seq 50); do [ -s {tmp}/sshd.pid ] && break; sleep 0.1; done\n"
              f"cd {tmp}\n{clone}\n")
    try:
        return subprocess.run(["unshare", "--net", "bash", "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        pid = (tmp / "sshd.pid").read_text().strip() if (tmp / "sshd.pid").exists() else ""
        if pid:
            subprocess.run(["kill", pid], check=False)


def test_the_app_server_clones_a_private_repo_with_the_deploy_key(tmp_path: Path) -> None:
    _require()
    host_key, line = _host_key(tmp_path)
    bare = bare_app_repo(tmp_path / "git", "sub { [200, [], ['private app']] };\n")
    files, clone = _stack(tmp_path, bare, line)
    key, owner, group, mode = files["/etc/perlstack/deploy-key"]
    assert (owner, group, mode) == ("perlapp", "perlapp", 0o400)
    assert key.decode() == (tmp_path / "repo" / deploykey.DEPLOY_KEY).read_text()
    assert line in files["/etc/perlstack/git-known-hosts"][0].decode().splitlines()
    command = _node_etc(tmp_path, files, clone)
    assert "StrictHostKeyChecking=yes" in command and "IdentitiesOnly=yes" in command
    public = (tmp_path / "repo" / "secrets" / "deploy-key.pub").read_text()

    done = _serve_and_clone(tmp_path, host_key, public, command)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "checkout" / "app.psgi").read_text().startswith("sub {")
    fetch = subprocess.run(["git", "-C", str(tmp_path / "checkout"), "config", "core.sshCommand"],
                           capture_output=True, text=True)
    assert "deploy-key" in fetch.stdout, "later fetches in the clone use the deploy key too"


def test_a_host_key_the_answers_do_not_name_is_refused(tmp_path: Path) -> None:
    _require()
    host_key, line = _host_key(tmp_path)
    bare = bare_app_repo(tmp_path / "git", "sub { [200, [], ['private app']] };\n")
    files, clone = _stack(tmp_path, bare, line)
    (tmp_path / "other").mkdir()
    _, other_line = _host_key(tmp_path / "other")
    command = _node_etc(tmp_path, files, clone, other_line + "\n")  # a key the server does not have
    public = (tmp_path / "repo" / "secrets" / "deploy-key.pub").read_text()
    done = _serve_and_clone(tmp_path, host_key, public, command)
    assert done.returncode != 0 and "Host key verification failed" in done.stderr, done.stderr
    assert not (tmp_path / "checkout").exists()


def test_a_key_the_server_does_not_know_is_refused(tmp_path: Path) -> None:
    _require()
    host_key, line = _host_key(tmp_path)
    bare = bare_app_repo(tmp_path / "git", "sub { [200, [], ['private app']] };\n")
    files, clone = _stack(tmp_path, bare, line)
    command = _node_etc(tmp_path, files, clone)
    done = _serve_and_clone(tmp_path, host_key, "", command)  # the deploy key was never added to the host
    assert done.returncode != 0 and "Permission denied" in done.stderr, done.stderr

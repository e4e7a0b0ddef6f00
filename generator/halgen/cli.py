"""halgen's command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from halgen import __version__
from halgen.compiler import pipeline, schema
from halgen.errors import HalgenError, Problem, ProblemsError

ANSWERS_HELP = "YAML answer file (see 'halgen schema'); missing fields take their defaults."


def _lint_file_rules(root: Path) -> list[Problem]:
    """halgen lint's file rules on a rendered tree: its errors, as 'ID message' problems.
    render, new and scale refuse to write a tree their own lint rejects."""
    from halgen.lint import Severity, lint
    from halgen.lint.config import load as load_lint_config

    report = lint(root, load_lint_config(root, None), tools=False)  # the repo's .halgen-lint.yml counts
    return [Problem(f.file, f.line, f"{f.rule} {f.severity.label} {f.message}")
            for f in report.findings if f.severity >= Severity.ERROR]


class _Commands(click.Group):
    """Commands with heavy imports load when used, so 'halgen lint' starts fast. A
    HalgenError from any command is shown as 'halgen COMMAND: message', exit code 2."""

    lazy = {"rehearse": ("halgen.rehearse.cli", "rehearse")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attribute = self.lazy[name]
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HalgenError as err:
            err.command = err.command or f"halgen {ctx.invoked_subcommand}"
            raise


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="halgen")
def main() -> None:
    """Compile a short answer file into a complete deployment repo for a
    highly available Perl (PSGI) stack on Linode: nginx + HAProxy load balancers,
    Starlet (or Starman) app servers, PostgreSQL with replicas, Redis with Sentinel.

    Bad answers are reported as FILE:LINE: field: message, with exit code 2.
    """


@main.command()
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@click.option("--answers", "answers_file", type=click.Path(path_type=Path, dir_okay=False), help=ANSWERS_HELP)
@click.option("--defaults", is_flag=True, help="Take the default for every question not in --answers (no prompts).")
@click.option("--vcs-ref", help="Blueprint git ref to use (default: this halgen's release; from a git checkout, "
                                     "the newest tag, else HEAD).")
@click.option("--advanced", is_flag=True, help="Ask every question, not only the basic ones (the rest take "
                                                "their defaults, all recorded in .copier-answers.yml).")
def new(dest: Path, answers_file: Path | None, defaults: bool, vcs_ref: str | None, advanced: bool) -> None:
    """Scaffold a new stack repo at DEST with copier (same as 'copier copy --trust').

    Without --answers or --defaults, copier asks the basic questions interactively,
    each checked as it is answered; if the whole set is refused at the end, the
    answers are kept in DEST.answers.yml for --answers.
    """
    from halgen.journeys.new import new as scaffold

    answers = pipeline.load_answers(answers_file) if (answers_file or defaults) else None
    out = scaffold(dest, answers, vcs_ref=vcs_ref, check=_lint_file_rules, advanced=advanced)
    click.echo(f"halgen: new stack in {out}")


@main.command()
@click.argument("answers_file", metavar="ANSWERS", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory to write the repo into (must be empty or absent unless --force).")
@click.option("--force", is_flag=True,
              help="Replace a non-empty --out directory (atomically, after a full render; secrets are kept).")
@click.option("--rehearsal", "rehearsal_prefix", type=click.Path(path_type=Path, file_okay=False),
              help="Render for a rehearsal on this machine: loopback addresses, every node's files under "
                   "PREFIX/<node>, secret files built too. Never deploy such a render.")
@click.option("--loopback-subnet", default="127.20.0.0/24", show_default=True,
              help="Subnet that replaces the VPC subnet in a rehearsal.")
def render(answers_file: Path | None, out: Path, force: bool, rehearsal_prefix: Path | None,
           loopback_subnet: str) -> None:
    """Validate ANSWERS fully, render the repo into a temporary directory, check it,
    then move it to --out. Without ANSWERS the built-in defaults are used.
    Creates secrets/secrets.env (gitignored) unless it exists.
    """
    from halgen.compiler.model import LINODE
    from halgen.compiler.write import build
    from halgen.compiler.write import render as compile_repo

    answers = pipeline.load_answers(answers_file)
    target = LINODE
    if rehearsal_prefix is not None:
        target = pipeline.rehearsal_target(rehearsal_prefix.resolve(), loopback_subnet)
    dest = compile_repo(answers, out, force=force, target=target, check=_lint_file_rules)
    if target.is_rehearsal:
        build(dest, answers, target)
    files = sum(1 for p in dest.rglob("*") if p.is_file())
    click.echo(f"halgen: rendered {files} files into {dest}")


@main.command(name="build")
@click.argument("repo", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--allow-placeholders", is_flag=True,
              help="Build even while answers or secrets are stand-ins (the placeholder SSH key, documentation "
                   "networks, example domains, empty Object Storage keys): for tests, never for real nodes.")
@click.option("--renew-certs", is_flag=True,
              help="Issue every node's TLS certificate anew from the stack CA (a build renews by itself those "
                   "that expire within 30 days).")
def build_cmd(repo: Path, allow_placeholders: bool, renew_certs: bool) -> None:
    """Build what REPO's nodes need with their secrets: the pasteable cloud-init
    user-data (REPO/build/user-data/<node>.yaml, and .yaml.b64 for the API) made from
    the repo's files as they are now, and the secret-bearing node files
    (REPO/build/nodes/<node>/). Secrets come from REPO/secrets/secrets.env (created on
    first use); the stack CA and each node's TLS certificate from REPO/secrets/tls/
    (created on first use, renewed when due; the CA key never leaves it); with an SSH
    app_repo, the app servers' read-only deploy key from REPO/secrets/deploy-key
    (created on first use: add the .pub beside it to the git host). build/ and
    secrets/ are gitignored.

    Refuses (exit 2, naming each field) while an answer or secret is a stand-in that
    would lock the admins out or break backups, unless --allow-placeholders.
    """
    from halgen.compiler import deploykey, placeholders, secrets
    from halgen.compiler.write import build

    answers = pipeline.load_repo_answers(repo)
    secrets.ensure(repo)
    if not allow_placeholders:
        found = placeholders.problems(repo)
        if found:
            raise ProblemsError(found, "these are stand-ins, not a real stack: fill them in (or pass "
                                       "--allow-placeholders for a test) and build again")
    key = repo / deploykey.DEPLOY_KEY
    had_key = key.exists()
    out = build(repo, answers, renew_certs=renew_certs)
    click.echo(f"halgen: secret-bearing files in {out}")
    if key.exists() and not had_key:
        public = key.with_name(key.name + deploykey.PUBLIC_SUFFIX)
        click.echo(f"halgen: new deploy key for {answers.app_repo}: add {public} to that repository as a "
                   f"read-only deploy key:\n{public.read_text(encoding='utf-8').strip()}")


@main.command()
@click.argument("role", type=click.Choice(["app"]))
@click.argument("count", type=click.IntRange(1, 250))
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False, exists=True), default=".",
              show_default=True, help="The stack repo (made by 'halgen new' or 'copier copy', committed).")
@click.option("--yes", is_flag=True, help="Do not ask before removing the files of nodes that go away.")
def scale(role: str, count: int, repo: Path, yes: bool) -> None:
    """Set the number of ROLE nodes to COUNT: adds or removes node files and updates the
    nginx upstreams, firewall rules, Sentinel placement and README through
    'copier update' at the repo's current blueprint version (local edits are kept).
    Shrinking asks before any node's files are removed.
    """
    from halgen.journeys.scale import scale as do_scale

    try:
        plan = do_scale(repo, role, count, confirm=lambda q: yes or click.confirm(q, default=False),
                        check=_lint_file_rules)
    except click.Abort:
        raise HalgenError("not confirmed; nothing changed (--yes skips the question)") from None
    gone = f"; removed {', '.join(plan.removed_nodes)}" if plan.removed_nodes else ""
    click.echo(f"halgen: {role} servers {plan.before} -> {plan.after}{gone}. Review with 'git status', then commit.")


@main.command()
@click.argument("repo", type=click.Path(path_type=Path, file_okay=False, exists=True), default=".")
def status(repo: Path) -> None:
    """Show REPO's blueprint version, whether a newer one exists, and which tracked files
    differ from a fresh render of its answers at that version (local edits)."""
    from halgen.journeys.status import status as get_status

    report = get_status(repo)
    newer = {True: f"yes: {report.latest} (copier update)", False: "no", None: report.latest}[report.update_available]
    click.echo(f"blueprint:   {report.source} at {report.version}")
    click.echo(f"newer:       {newer}")
    if not (report.edited or report.added or report.missing):
        click.echo("local edits: none")
    for label, paths in (("edited", report.edited), ("added", report.added), ("missing", report.missing)):
        for path in paths:
            click.echo(f"{label + ':':<13}{path}")


LINT_PACKAGES = "nginx systemd cloud-init shellcheck postgresql redis-server openssl starman starlet"


@main.command(name="lint", epilog=f"Real-program checks need: apt-get install {LINT_PACKAGES}")
@click.argument("repo", type=click.Path(path_type=Path, file_okay=False, exists=True), default=".")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the report to this file instead of standard output.")
@click.option("--fail-on", type=click.Choice(["error", "warning", "info", "never"]), default=None,
              help="Exit 1 when a finding is at or above this severity (default: the config's fail_on, else warning).")
@click.option("--no-tools", is_flag=True, help="Run the file rules only, not the real programs (nginx -t, ...).")
@click.option("--select", help="Run only these rules (comma-separated IDs or names).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Lint settings (default: REPO/.halgen-lint.yml).")
@click.option("--explain", "explain_rule", metavar="ID", help="Show what a rule checks, why, and how to fix it.")
@click.option("--list-rules", is_flag=True, help="List every rule: ID, severity, name, summary.")
def lint_cmd(repo: Path, fmt: str, output: Path | None, fail_on: str | None, no_tools: bool, select: str | None,
             config_file: Path | None, explain_rule: str | None, list_rules: bool) -> None:
    """Check a generated stack repo for broken, inconsistent or unsafe configs:
    each file parses, the files agree with each other and with the answers, nothing
    is open or leaked, limits and backups are sane - and, when installed, nginx,
    systemd-analyze, cloud-init, shellcheck, postgres and redis-server accept them.

    Prints FILE:LINE: ID severity message. Exit 0 clean, 1 findings at or above
    --fail-on, 2 usage error. Silence a rule with '# halgen-lint: disable=ID' on a
    line (or the line above), or in .halgen-lint.yml (disable, ignore, fail_on, tools).
    """
    from halgen.lint import RULES, Severity, lint
    from halgen.lint import config as lint_config
    from halgen.lint.docs import explain as explain_text
    from halgen.lint.output import FORMATS
    from halgen.lint.registry import find

    if explain_rule:
        try:
            click.echo(explain_text(find(explain_rule)), nl=False)
        except KeyError:
            raise HalgenError(f"no rule {explain_rule!r} (see 'halgen lint --list-rules')") from None
        return
    if list_rules:
        for r in sorted(RULES.values(), key=lambda r: r.id):
            click.echo(f"{r.id}  {r.severity.label:<7}  {r.name:<30} {r.summary}")
        return
    if not (repo / ".copier-answers.yml").is_file():
        raise HalgenError(f"{repo}: not a halgen stack repo (it has no .copier-answers.yml); give the directory "
                          "'halgen new' or 'halgen render' made")
    config = lint_config.load(repo, config_file)
    selected = None
    if select:
        try:
            selected = {find(key.strip()).id for key in select.split(",") if key.strip()}
        except KeyError as err:
            raise HalgenError(f"--select: no rule {err.args[0]!r} (see 'halgen lint --list-rules')") from None
    report = lint(repo, config, tools=not no_tools, select=selected)
    rendered = FORMATS[fmt](report)
    if output:
        try:
            output.write_text(rendered)
        except OSError as err:
            raise HalgenError(f"--output: {err}") from None
        if fmt != "text":
            click.echo(FORMATS["text"](report).splitlines()[-1], err=True)
    else:
        click.echo(rendered, nl=False)
    threshold = fail_on or config.fail_on or "warning"
    if not report.complete or threshold != "never" and report.at_or_above(Severity.parse(threshold)):
        sys.exit(1)


@main.command(name="schema")
def schema_cmd() -> None:
    """Print the JSON Schema of the answers."""
    click.echo(json.dumps(schema.schema(), indent=2))


@main.command()
@click.argument("field")
def explain(field: str) -> None:
    """Show FIELD's description, type, bounds and default (e.g. lb_keepalive, admins.name)."""
    try:
        click.echo(schema.explain(field), nl=False)
    except KeyError as err:
        raise HalgenError(err.args[0]) from None


@main.command()
@click.argument("answers_file", metavar="ANSWERS", type=click.Path(path_type=Path, dir_okay=False))
def check(answers_file: Path) -> None:
    """Validate ANSWERS without rendering anything (exit 0 valid, 2 invalid)."""
    pipeline.load_answers(answers_file)
    click.echo(f"halgen: {answers_file} is valid")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="halgen")

"""``halgen rehearse``: the command line of the rehearsal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from halgen.compiler import pipeline
from halgen.compiler.answers import Answers
from halgen.compiler.model import LINODE, derive
from halgen.errors import HalgenError
from halgen.rehearse import bench as benchmark
from halgen.rehearse import nodes, programs
from halgen.rehearse.drillset import DRILLS
from halgen.rehearse.nodedrills import NODE_DRILLS
from halgen.rehearse.report import Report
from halgen.rehearse.stack import DEFAULT_SUBNET, Interrupted, Rehearsal, stray_processes

EXIT_MISSED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


@click.command(name="rehearse")
@click.argument("repo", type=click.Path(path_type=Path, file_okay=False), required=False)
@click.option("--nodes", "where", type=click.Choice(["loopback", "containers", "vm"]), default="loopback",
              show_default=True,
              help="loopback: the stack's programs from a fresh render on loopback addresses. containers: every "
                   "node booted from REPO's built user-data (halgen build) as a Debian 12 container "
                   "(systemd-nspawn, root only) on a private bridge with the VPC addresses, a package mirror "
                   "and an Object Storage stand-in; checks each node and the stack. vm: the same, one node at a "
                   "time in a QEMU virtual machine (emulated, a kernel of its own; minutes per node).")
@click.option("--only", "only", multiple=True, metavar="NODE",
              help="With --nodes vm: boot this node (repeatable).  [default: the first node of each role]")
@click.option("--drill", "drill_names", multiple=True, type=click.Choice([*DRILLS, *NODE_DRILLS, "all"]),
              help="Run this drill after the smoke test (repeatable; 'all' runs every one, in the order listed). "
                   "The *-power-off drills are for --nodes containers: the node's container loses power.")
@click.option("--bench", is_flag=True,
              help="Benchmark the generated load balancer (nginx + HAProxy) against the seed document's nginx "
                   "at 1x, 2x and 4x the app server workers (needs wrk); "
                   "with vpc_tls, also the data path against a twin stack without TLS inside the VPC.")
@click.option("--bench-rounds", default=3, show_default=True, type=click.IntRange(1, 50),
              help="Benchmark rounds; each runs both configs, alternating which goes first.")
@click.option("--bench-duration", default=5.0, show_default=True, type=click.FloatRange(1, 600),
              help="Seconds of load per config and round.")
@click.option("--bench-connections", type=click.IntRange(2, 10000),
              help="Measure this many concurrent wrk connections only.  [default: 1x, 2x and 4x the stack's "
                   "app server workers, one row each]")
@click.option("--check", is_flag=True,
              help="Only name the programs that are missing here and print the apt command that installs them.")
@click.option("--loopback-subnet", default=DEFAULT_SUBNET, show_default=True,
              help="Loopback /16 to /24 for the nodes (the test-suite uses 127.20.0.0/24).")
@click.option("--keep", is_flag=True, help="Keep the temporary directory (render and logs) for debugging.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def rehearse(repo: Path | None, where: str, only: tuple[str, ...], drill_names: tuple[str, ...], bench: bool,
             bench_rounds: int, bench_duration: float, bench_connections: int | None, check: bool,
             loopback_subnet: str, keep: bool, as_json: bool) -> None:
    """Run REPO's stack on this machine on loopback addresses, in dependency order: the
    PostgreSQL primary and replicas, Redis, the Sentinels, the app servers (Starlet or
    Starman) with the demo app, HAProxy and nginx.
    Smoke-test it through the load balancers, run the drills and the benchmark asked for,
    print a report, and stop everything it started (also on Ctrl-C) and remove its
    temporary directory.

    REPO is a generated repo: its answers (.copier-answers.yml) are rendered again for
    loopback with a temporary path prefix; nothing else differs. With --nodes containers
    (or vm), REPO's nodes boot instead from the user-data 'halgen build' wrote, byte for
    byte, on a private network with the VPC addresses. Progress goes to stderr,
    the report to stdout. Exit 0 when every target is met, 1 when one is missed, 2 on a
    usage error, bad answers or a missing program, 130 when interrupted.
    """
    if where != "loopback":
        _rehearse_nodes(repo, where, only, check, drill_names, bench, as_json, keep)
        return
    if set(drill_names) & set(NODE_DRILLS):
        raise HalgenError(f"{', '.join(sorted(set(drill_names) & set(NODE_DRILLS)))}: only with --nodes containers")
    answers = pipeline.load_repo_answers(repo) if repo is not None else pipeline.default_answers()
    needed = programs.needed(answers.pg_version, bench=bench or check, tls=answers.lb_tls or check,
                             patroni=answers.pg_failover == "patroni" or check)
    missing = programs.missing(needed)
    if check:
        if missing:
            click.echo(f"missing: {', '.join(p.name for p in missing)}")
            click.echo(programs.apt_command(missing))
            sys.exit(EXIT_USAGE)
        click.echo("every program a rehearsal needs is here")
        return
    if repo is None:
        raise HalgenError("give the generated repo to rehearse (or --check)")
    pipeline.rehearsal_target(Path("/tmp"), loopback_subnet)
    if missing:
        missing_names = ", ".join(p.name for p in missing)
        raise HalgenError(f"missing {missing_names}; install with: {programs.apt_command(missing)}")
    if bench and answers.lb_tls:
        raise HalgenError("--bench compares plain HTTP like the seed's config; this stack has lb_tls: true")
    names = list(DRILLS) if "all" in drill_names else [name for name in DRILLS if name in drill_names]
    options = dict(rounds=bench_rounds, duration_s=bench_duration, connections=bench_connections) if bench else None
    report = run(answers, loopback_subnet, names, options, keep)
    click.echo(report.json() if as_json else report.text(), nl=False)
    sys.exit(0 if report.passed else EXIT_INTERRUPTED if report.interrupted else EXIT_MISSED)


def _rehearse_nodes(repo: Path | None, where: str, only: tuple[str, ...], check: bool, drill_names: tuple[str, ...],
                    bench: bool, as_json: bool, keep: bool) -> None:
    missing = nodes.missing_programs(vm=where == "vm")
    if check:
        click.echo("missing: " + "; ".join(missing) if missing
                   else "every program a containers rehearsal needs is here")
        sys.exit(EXIT_USAGE if missing else 0)
    if repo is None:
        raise HalgenError("give the generated repo to boot (built with 'halgen build')")
    loopback_only = sorted(set(drill_names) & set(DRILLS)) + ["--bench"] * bench
    if loopback_only:
        raise HalgenError(f"{', '.join(loopback_only)}: run on loopback only; leave out --nodes {where}")
    if where == "vm" and drill_names:
        raise HalgenError("--drill runs on --nodes containers (a whole stack), not on one virtual machine at a time")
    if only and where != "vm":
        raise HalgenError("--only picks nodes for --nodes vm")
    if missing:
        raise HalgenError("missing " + "; ".join(missing))
    if os.geteuid() != 0:
        raise HalgenError("--nodes containers boots containers and makes a network namespace: run it as root")
    stack = derive(pipeline.load_repo_answers(repo), LINODE)
    if missing_user_data := nodes.unbuilt(repo, stack):
        raise HalgenError(f"no built user-data for {', '.join(missing_user_data)}: run 'halgen build {repo}' "
                          "first (the containers boot exactly what you would paste into Linode's create form)")
    if where == "vm":
        unknown = sorted(set(only) - {n.name for n in stack.nodes})
        if unknown:
            raise HalgenError(f"--only {', '.join(unknown)}: no such node (nodes: "
                              f"{', '.join(n.name for n in stack.nodes)})")
        report = nodes.rehearse_vms(repo, stack, keep, list(only) or nodes.first_of_each_role(stack))
    else:
        drills = [drill for name, drill in NODE_DRILLS.items() if name in drill_names or "all" in drill_names]
        report = nodes.rehearse_nodes(repo, stack, keep, drills)
    click.echo(report.json() if as_json else report.text(), nl=False)
    sys.exit(0 if report.passed else EXIT_MISSED)


def run(answers: Answers, loopback_subnet: str, drill_names: list[str],
        bench_options: dict[str, Any] | None, keep: bool) -> Report:
    report = Report(project=answers.project, loopback_subnet=loopback_subnet, directory="")
    rehearsal = Rehearsal(answers, loopback_subnet, keep=keep)
    try:
        with rehearsal:
            try:
                _run_steps(rehearsal, report, drill_names, bench_options)
            except (HalgenError, TimeoutError, OSError, subprocess.SubprocessError) as err:
                report.failure = str(err)
                rehearsal.show_logs()
    except Interrupted as signal_name:
        report.interrupted = True
        click.echo(f"halgen rehearse: {signal_name}: stopped everything it started", err=True)
    if report.directory:
        report.strays = stray_processes(Path(report.directory))
        report.removed = not Path(report.directory).exists()
    return report


def _run_steps(rehearsal: Rehearsal, report: Report, drill_names: list[str],
               bench_options: dict[str, Any] | None) -> None:
    rehearsal.lay_out()
    report.directory = str(rehearsal.base)
    report.nodes = [node.name for node in rehearsal.stack.nodes]
    rehearsal.start()
    rehearsal.progress("smoke test through the load balancers")
    report.smoke = rehearsal.smoke()
    if not all(check.ok for check in report.smoke):
        report.failure = "the smoke test failed, so no benchmark or drill ran"
        return
    if bench_options is not None:  # before the drills, which leave the stack changed
        report.bench = benchmark.run(rehearsal, **bench_options)
    for name in drill_names:
        drill = DRILLS[name]
        rehearsal.progress(f"drill {name}: {(drill.__doc__ or '').split(chr(10))[0]}")
        report.drills.append(drill(rehearsal))

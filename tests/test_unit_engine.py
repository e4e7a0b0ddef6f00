"""halgen's render engine on small blueprints made here: path expansion (Jinja, yield,
empty parts), the settings it reads from copier.yml, and what it renders."""

from __future__ import annotations

from pathlib import Path

import pytest

from halgen.compiler.engine import COPIER_DEFAULT_EXCLUDE, Blueprint, CopierSettings


def _blueprint(tmp_path: Path, files: dict[str, str], copier_yml: str = "_subdirectory: bp\n") -> Blueprint:
    (tmp_path / "copier.yml").write_text(copier_yml)
    for rel, text in files.items():
        path = tmp_path / "bp" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Blueprint(tmp_path / "bp", CopierSettings.read(tmp_path))


def _render_all(bp: Blueprint, **ctx: object) -> dict[str, str]:
    return {str(path): text for source in bp._sources() for path, text, _ in bp._render_source(source, dict(ctx))}


def _expand(bp: Blueprint, path: str, **ctx: object) -> list[str]:
    return ["/".join(parts) for parts, _ in bp.expand(tuple(path.split("/")), dict(ctx))]


def test_plain_parts_pass_through(tmp_path: Path) -> None:
    assert _expand(_blueprint(tmp_path, {}), "etc/nginx/nginx.conf") == ["etc/nginx/nginx.conf"]


def test_jinja_in_a_part_is_rendered(tmp_path: Path) -> None:
    assert _expand(_blueprint(tmp_path, {}), "etc/{{ project }}/app.env", project="shop") == ["etc/shop/app.env"]


def test_a_part_that_renders_empty_drops_the_file(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, {})
    assert _expand(bp, "{% if tls %}certs{% endif %}/x.pem", tls=False) == []
    assert _expand(bp, "{% if tls %}certs{% endif %}/x.pem", tls=True) == ["certs/x.pem"]


def test_yield_forks_one_path_per_item_in_order(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, {})
    assert _expand(bp, "nodes/{% yield n from names %}{{ n }}{% endyield %}/NODE.md", names=["lb1", "app1", "db1"]) \
        == ["nodes/lb1/NODE.md", "nodes/app1/NODE.md", "nodes/db1/NODE.md"]


def test_yield_over_nothing_renders_nothing(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, {})
    assert _expand(bp, "nodes/{% yield n from names %}{{ n }}{% endyield %}/x", names=[]) == []
    assert _expand(bp, "nodes/{% yield n from names %}{{ n }}{% endyield %}/x", names=None) == []


def test_nested_yields_see_the_outer_item(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, {})
    nodes = [{"name": "app1", "units": ["a", "b"]}, {"name": "app2", "units": ["c"]}]
    path = ("{% yield n from nodes %}{{ n.name }}{% endyield %}/"
            "{% yield u from n.units %}{{ n.name }}-{{ u }}{% endyield %}.service")
    assert _expand(bp, path, nodes=nodes) == ["app1/app1-a.service", "app1/app1-b.service", "app2/app2-c.service"]


def test_text_around_a_yield_stays(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, {})
    assert _expand(bp, "pre-{% yield x from xs %}{{ x }}{% endyield %}-post", xs=[1, 2]) == ["pre-1-post", "pre-2-post"]


def test_the_yielded_variable_reaches_the_file_template(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, {"{% yield n from names %}{{ n }}{% endyield %}.txt.jinja": "node {{ n }}\n"})
    assert _render_all(bp, names=["a", "b"]) == {"a.txt": "node a\n", "b.txt": "node b\n"}


def test_suffix_decides_what_is_a_template(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, {"raw.txt": "{{ not_rendered }}\n", "done.txt.jinja": "{{ 1 + 1 }}\n"})
    assert _render_all(bp) == {"raw.txt": "{{ not_rendered }}\n", "done.txt": "2\n"}


def test_file_modes_are_kept(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, {"run.sh.jinja": "#!/bin/sh\n"})
    (tmp_path / "bp" / "run.sh.jinja").chmod(0o755)
    [(_, _, mode)] = [out for source in bp._sources() for out in bp._render_source(source, {})]
    assert mode == 0o755


def test_settings_come_from_copier_yml_with_copiers_defaults(tmp_path: Path) -> None:
    (tmp_path / "copier.yml").write_text("_subdirectory: blueprints/stack\n_jinja_extensions: [my.Ext]\n")
    settings = CopierSettings.read(tmp_path)
    assert settings.subdirectory == "blueprints/stack"
    assert settings.suffix == ".jinja"
    assert settings.answers_file == ".copier-answers.yml"
    assert settings.exclude == ()  # copier excludes nothing by default from a subdirectory
    assert settings.extensions == ("jinja2_ansible_filters.AnsibleCoreFiltersExtension", "my.Ext")
    assert dict(settings.envops) == {"keep_trailing_newline": True}


def test_settings_at_the_template_root_exclude_copiers_defaults(tmp_path: Path) -> None:
    (tmp_path / "copier.yml").write_text("_templates_suffix: .tmpl\n_answers_file: .answers.yml\n")
    settings = CopierSettings.read(tmp_path)
    assert settings.exclude == COPIER_DEFAULT_EXCLUDE
    assert (settings.suffix, settings.answers_file) == (".tmpl", ".answers.yml")


@pytest.mark.parametrize("name", ["~backup", "notes.pyc", "__pycache__/x.txt"])
def test_excluded_sources_are_not_rendered(tmp_path: Path, name: str) -> None:
    bp = _blueprint(tmp_path, {name: "x", "kept.txt": "y"}, copier_yml="_subdirectory: bp\n_exclude: ['~*', '*.pyc', __pycache__]\n")
    assert [s.name for s in bp._sources()] == ["kept.txt"]


def test_the_real_blueprint_is_read_through_copier_yml() -> None:
    from halgen.compiler import resources

    bp = Blueprint.of(resources.template_root())
    assert bp.root == resources.template_root() / "blueprints" / "stack"
    assert "halgen.compiler.extension.HalgenExtension" in bp.settings.extensions
    assert Blueprint.of(resources.template_root(), "secrets").root == resources.template_root() / "blueprints" / "secrets"

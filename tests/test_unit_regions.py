"""The dated region catalogue: Object Storage clusters per region and the Metadata service
(cloud-init), and the rules that use it."""

from __future__ import annotations

from halgen.compiler import crossfield, pipeline, resources


def _catalogue() -> dict:
    return resources.load_json(resources.DATA_DIR / "linode_regions.json")


def test_the_catalogue_says_where_its_figures_come_from() -> None:
    data = _catalogue()
    assert data["as_of"] and data["source"] and data["capabilities_source"]


def test_the_endpoint_default_follows_the_region() -> None:
    assert crossfield.endpoint_for("fr-par") == "fr-par-1.linodeobjects.com"
    assert crossfield.endpoint_for("us-ord") == "us-ord-1.linodeobjects.com"
    assert crossfield.endpoint_for("xx-nowhere") == "xx-nowhere-1.linodeobjects.com"  # the usual form


def test_an_endpoint_of_another_region_is_refused_with_the_right_one() -> None:
    answers = pipeline.default_answers().replace(region="nl-ams")
    [(path, message, _)] = list(crossfield.backups_stay_in_the_region(answers))
    assert path == ("backup_endpoint",) and "use nl-ams-1.linodeobjects.com" in message


def test_an_unknown_cluster_is_not_second_guessed() -> None:
    answers = pipeline.default_answers().replace(region="de-fra-2", backup_endpoint="de-fra-1.linodeobjects.com")
    assert list(crossfield.backups_stay_in_the_region(answers)) == []


def test_a_region_without_metadata_is_refused() -> None:
    without = next(region for region, c in _catalogue()["capabilities"].items() if not c["metadata"])
    [(path, message, _)] = list(crossfield.region_boots_user_data(pipeline.default_answers().replace(region=without)))
    assert path == ("region",) and "Metadata" in message


def test_every_region_with_object_storage_clusters_offers_metadata() -> None:
    data = _catalogue()
    for region in data["object_storage"]:
        assert data["capabilities"].get(region, {"metadata": True})["metadata"], region


def test_off_site_backups_are_a_choice() -> None:
    answers = pipeline.default_answers().replace(region="nl-ams", backup_offsite=True)
    assert list(crossfield.backups_stay_in_the_region(answers)) == []

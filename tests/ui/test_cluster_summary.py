from index.clusters import ClusterSettings, cluster_collection
from tests.index.conftest import paired_groups
from ui.clusters import summary


def test_the_clusters_page_says_which_rule_chose_k():
    """The headline says in plain words how the automatic K was found: modularity's split, or a finer scale that
    comes back the same over perturbed runs (the clusterer's own sentence, in the tooltip, says it in full)."""
    x, _ = paired_groups(24, 20, seed=0)
    finer = cluster_collection(x, None, ClusterSettings(algorithm="graph", stability_runs=0))
    merged = cluster_collection(x, None, ClusterSettings(algorithm="graph", k_rule="modularity", stability_runs=0))
    assert (finer.k_by, merged.k_by) == ("finer scale", "modularity")
    assert summary(finer, automatic=True)[0] == (f"**{finer.k} groups**, found automatically: the split that comes "
                                                 "back most alike when it is made again with some of the links "
                                                 "between similar photos left out.")
    assert "keeps each photo's most similar photos in its own group best" in summary(merged, automatic=True)[0]
    assert summary(finer, automatic=False)[0] == f"**{finer.k} groups**, as chosen."

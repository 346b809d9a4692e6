# Helpers of rules/compare.smk: the comparisons of the config (checked by
# zernike3d/workflow_config.py), their inputs, arguments, resources and targets.

COMPARISONS = config.get("compare") or {}
#: the figures of a comparison, each in the report with its caption
COMPARE_FIGURES = {
    "volume_distances": "volume distances",
    "order_correlation": "correlation per order",
    "latent_overlap": "latent spaces",
    "landscape_1d": "landscape (1-D)",
    "landscape_2d": "landscape (2-D)",
    "cluster_populations": "cluster populations",
    "free_energy_states": "free energy of the states",
    "free_energy_1d": "free energy (1-D)",
    "free_energy_2d": "free energy (2-D)",
}


wildcard_constraints:
    comparison=_names_regex(list(COMPARISONS)),


def compare_inputs(wildcards):
    return [
        f"results/{member}/{name}"
        for member in COMPARISONS[wildcards.comparison]
        for name in (
            "preprocessed.npz",
            "moments.npz",
            "particle_invariants.zarr/zarr.json",
        )
    ]


def compare_folders(wildcards):
    return " ".join(
        shlex.quote(f"results/{member}") for member in COMPARISONS[wildcards.comparison]
    )


def compare_options(wildcards):
    return f"--temperature {config['temperature']}"


def compare_threads(wildcards):
    """``resources.compare.threads`` or the global threads, capped to the nodes' CPUs."""
    return policy.rule_threads(
        "compare", {"threads": config["threads"], "gpu": False}, SITE
    )


def compare_resources(key):
    """``mem_mb``/``runtime`` of a compare job: ``resources.compare`` or
    zernike3d.scheduling.policy.compare_resources of the members' bundles."""

    def estimate(wildcards, input, attempt):
        bundles = [f for f in input if f.endswith("preprocessed.npz")]
        return (
            SITE.override("compare").get(key)
            or policy.compare_resources(bundles, attempt, SITE)[key]
        )

    return estimate


def compare_targets():
    return [f"results/compare/{name}/landscape.npz" for name in COMPARISONS] + [
        f"results/compare/{name}/{figure}.png"
        for name in COMPARISONS
        for figure in COMPARE_FIGURES
    ]

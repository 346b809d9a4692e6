# Helpers of rules/compare.smk: the comparisons of the config (checked by
# zernike3d/workflow_config.py; their inputs, arguments and targets are in
# zernike3d/workflow_jobs.py), their threads and resources.

COMPARISONS = config.get("compare") or {}


wildcard_constraints:
    comparison=_names_regex(list(COMPARISONS)),


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

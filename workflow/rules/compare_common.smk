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
    override = (config["resources"].get("compare") or {}).get("threads")
    return override or config["threads"]


def compare_resources(key):
    """mem_mb / runtime of a compare job: libraries and work arrays (1000 MB), the joint
    landscape (about 150 bytes per particle) and each dataset bundle held twice (maps,
    latents); measured: 1.04 GB peak for three jobs of 1,000,000 particles at order 50
    (benchmarks/bench_compare.py), estimated 1.6 GB. Run time about a minute per million
    particles, plus the alignments."""

    def estimate(wildcards, input, attempt):
        override = (config["resources"].get("compare") or {}).get(key)
        if override:
            return override
        from zernike3d.scheduling.inputs import bundle_shape

        bundles = [f for f in input if f.endswith("preprocessed.npz")]
        particles = sum(bundle_shape(f).n_particles for f in bundles)
        if key == "mem_mb":
            held = 2 * sum(os.path.getsize(f) for f in bundles)
            return int((1000 + (particles * 150 + held) / 1e6) * attempt)
        return int((10 + particles / 1e6) * attempt)

    return estimate


def compare_targets():
    return [f"results/compare/{name}/landscape.npz" for name in COMPARISONS] + [
        f"results/compare/{name}/{figure}.png"
        for name in COMPARISONS
        for figure in COMPARE_FIGURES
    ]

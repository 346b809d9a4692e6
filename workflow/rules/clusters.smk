# Acting on a 3DVA landscape: clusters, particle subsets for cryoSPARC, maps at the
# cluster centres, paths between states (datasets.<name>.clusters, see config/README.md).


def is_3dva(name):
    """Does the dataset have particles (a 3DVA job), whether or not per-particle
    invariants are computed?"""
    d = DATASETS[name]
    return any(
        d.get(key) is not None for key in ("job_dir", "wiggle", "example", "particles")
    )


def clusters_of(name):
    """The dataset's clusters section; {} for a dataset without particles."""
    return (DATASETS[name].get("clusters") or {}) if is_3dva(name) else {}


def cluster_datasets():
    return [n for n in DATASETS if clusters_of(n).get("k")]


def path_datasets():
    return [n for n in DATASETS if clusters_of(n).get("paths")]


def light_resources(stage):
    """mem_mb and runtime (minutes) of the cluster and paths jobs, multiplied by the attempt
    (retries): 4 GB and 30 min, enough for about 6 million particles (a million take 0.6 GB
    and 20 s: benchmarks/bench_clusters.py); resources.<stage> in the config overrides them.
    """

    def value(key, default):
        return (
            lambda wc, attempt: (config["resources"].get(stage) or {}).get(key)
            or default * attempt
        )

    return {"mem_mb": value("mem_mb", 4000), "runtime": value("runtime", 30)}


def cluster_inputs(wildcards):
    files = {
        "data": f"results/{wildcards.dataset}/preprocessed.npz",
        "maps": f"results/{wildcards.dataset}/maps",
    }
    if clusters_of(wildcards.dataset).get("space") == "invariants":
        files["particle_invariants"] = (
            f"results/{wildcards.dataset}/particle_invariants.zarr/zarr.json"
        )
    return files


def cluster_args(wildcards):
    """Options of `zernike3d cluster` from datasets.<name>.clusters (wildcards only: see
    the note on params in inputs.smk)."""
    c = clusters_of(wildcards.dataset)
    args = [
        opt("--k", c["k"]),
        opt("--method", c["method"]),
        opt("--space", c["space"]),
    ]
    if c["space"] == "invariants":
        args.append(
            opt(
                "--particle-invariants",
                f"results/{wildcards.dataset}/particle_invariants.zarr",
            )
        )
    if c["export_subsets"]:
        args.append("--subsets")
    if c.get("bins"):
        args.append("--bins " + " ".join(shlex.quote(b) for b in c["bins"]))
    if c.get("ranges"):
        args.append("--range " + " ".join(shlex.quote(r) for r in c["ranges"]))
    args.append(opt("--particles-cs", c.get("particles_cs")))
    return " ".join(filter(None, args))


def path_args(wildcards):
    c = clusters_of(wildcards.dataset)
    args = [
        f"--between {shlex.quote(str(a))} {shlex.quote(str(b))}" for a, b in c["paths"]
    ]
    args += [
        opt("--frames", c["path_frames"]),
        opt("--neighbours", c["path_neighbours"]),
    ]
    if c["path_density"]:
        args.append("--density")
    return " ".join(filter(None, args))


def map_extra_args(wildcards):
    r = settings(wildcards)["reconstruct"]
    return " ".join(
        filter(
            None,
            [
                "--mapspace" if r.get("mapspace") else None,
                "--movie" if r.get("movie") else None,
            ],
        )
    )


def path_inputs(wildcards):
    files = {
        "data": f"results/{wildcards.dataset}/preprocessed.npz",
        "maps": f"results/{wildcards.dataset}/maps",
    }
    if clusters_of(wildcards.dataset).get("k"):
        files["centres"] = f"results/{wildcards.dataset}/clusters/centres.csv"
    return files


def cluster_targets():
    targets = []
    for name in cluster_datasets():
        targets += [
            f"results/{name}/clusters/populations.csv",
            f"results/{name}/clusters/latents.png",
        ]
        if clusters_of(name)["maps"]:
            targets.append(f"results/{name}/cluster_maps")
    for name in path_datasets():
        targets += [
            f"results/{name}/paths/paths.csv",
            f"results/{name}/paths/latents.png",
            f"results/{name}/path_maps",
        ]
    return targets


rule cluster:
    """Clusters of the particles (labels, populations, centres), subsets for cryoSPARC
    (clusters/subsets/*.cs and *.csg)."""
    input:
        unpack(cluster_inputs),
    output:
        selections="results/{dataset}/clusters/selections.csv",
        labels="results/{dataset}/clusters/labels.csv",
        centres="results/{dataset}/clusters/centres.csv",
        populations=report(
            "results/{dataset}/clusters/populations.csv",
            caption="../report/cluster_populations.rst",
            category="Clusters and paths",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "cluster populations"},
        ),
        plot=report(
            "results/{dataset}/clusters/latents.png",
            caption="../report/cluster_latents.rst",
            category="Clusters and paths",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "latent space, clusters"},
        ),
    log:
        "logs/{dataset}/cluster.log",
    benchmark:
        "logs/{dataset}/cluster.benchmark.tsv"
    wildcard_constraints:
        dataset=_names_regex(cluster_datasets()),
    conda:
        conda_env()
    threads: rule_threads("cluster")
    resources:
        **light_resources("cluster"),
    params:
        args=cluster_args,
        out_dir="results/{dataset}/clusters",
    shell:
        "OMP_NUM_THREADS={threads} zernike3d cluster {input.data} {params.args} --index {input.maps}/index.csv "
        "--threads {threads} --out-dir {params.out_dir} > {log} 2>&1"


rule cluster_maps:
    """Maps at the cluster centres (snapped to real particles), with a ChimeraX script."""
    input:
        moments="results/{dataset}/moments.npz",
        data="results/{dataset}/preprocessed.npz",
        centres="results/{dataset}/clusters/centres.csv",
    output:
        directory("results/{dataset}/cluster_maps"),
    log:
        "logs/{dataset}/cluster_maps.log",
    benchmark:
        "logs/{dataset}/cluster_maps.benchmark.tsv"
    conda:
        conda_env(gpu_capable=True)
    threads: rule_threads("reconstruct")
    resources:
        **rule_resources_for("reconstruct", "data"),
    params:
        order=lambda wc: opt("--order", settings(wc)["reconstruct"].get("order")),
        extra=map_extra_args,
        max_memory=max_memory_arg,
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d reconstruct {input.moments} --particles {input.data} "
        "--points {input.centres} --out-dir {output} {params.order} {params.extra} --threads {threads} {params.max_memory} > {log} 2>&1"


rule paths:
    """Paths between chosen states through the particles' density, drawn on the latents."""
    input:
        unpack(path_inputs),
    output:
        table="results/{dataset}/paths/paths.csv",
        plot=report(
            "results/{dataset}/paths/latents.png",
            caption="../report/cluster_paths.rst",
            category="Clusters and paths",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "latent space, paths"},
        ),
    log:
        "logs/{dataset}/paths.log",
    benchmark:
        "logs/{dataset}/paths.benchmark.tsv"
    wildcard_constraints:
        dataset=_names_regex(path_datasets()),
    conda:
        conda_env()
    threads: 1
    resources:
        **light_resources("paths"),
    params:
        args=path_args,
        clusters=lambda wc, input: opt("--clusters", input.get("centres")),
    shell:
        "zernike3d path {input.data} {params.args} {params.clusters} --index {input.maps}/index.csv "
        "--out {output.table} --plot {output.plot} > {log} 2>&1"


rule path_maps:
    """Maps along each path, with a ChimeraX script per path."""
    input:
        moments="results/{dataset}/moments.npz",
        data="results/{dataset}/preprocessed.npz",
        paths="results/{dataset}/paths/paths.csv",
    output:
        directory("results/{dataset}/path_maps"),
    log:
        "logs/{dataset}/path_maps.log",
    benchmark:
        "logs/{dataset}/path_maps.benchmark.tsv"
    conda:
        conda_env(gpu_capable=True)
    threads: rule_threads("reconstruct")
    resources:
        **rule_resources_for("reconstruct", "data"),
    params:
        order=lambda wc: opt("--order", settings(wc)["reconstruct"].get("order")),
        extra=map_extra_args,
        max_memory=max_memory_arg,
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d reconstruct {input.moments} --particles {input.data} "
        "--points {input.paths} --out-dir {output} {params.order} {params.extra} --threads {threads} {params.max_memory} > {log} 2>&1"

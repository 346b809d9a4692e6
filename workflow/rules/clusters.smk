# Acting on a 3DVA landscape: clusters, particle subsets for cryoSPARC, maps at the
# cluster centres, paths between states (datasets.<name>.clusters, see config/README.md).


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
    group:
        "finish_{dataset}"
    conda:
        conda_env()
    threads: rule_threads("cluster")
    resources:
        **rule_resources_for("cluster", "data"),
    params:
        args=cluster_args,
        out_dir="results/{dataset}/clusters",
    shell:
        "OMP_NUM_THREADS={threads} zernike3d cluster {input.data} {params.args} --index {input.maps}/index.csv "
        "--threads {threads} --out-dir {params.out_dir} > {log} 2>&1"


rule cluster_maps:
    """Maps at the cluster centres (snapped to real particles), with a ChimeraX script:
    combinations of the job's volumes solved from reconstruct's maps where they hold
    them (same order and grid), else reconstructed."""
    input:
        moments="results/{dataset}/moments.npz",
        data="results/{dataset}/preprocessed.npz",
        centres="results/{dataset}/clusters/centres.csv",
        maps="results/{dataset}/maps",
    output:
        directory("results/{dataset}/cluster_maps"),
    log:
        "logs/{dataset}/cluster_maps.log",
    benchmark:
        "logs/{dataset}/cluster_maps.benchmark.tsv"
    group:
        transform_group("reconstruct")
    conda:
        conda_env(gpu_capable=True)
    threads: rule_threads("reconstruct")
    resources:
        **rule_resources_for("cluster_maps", "data"),
    params:
        order=lambda wc: opt("--order", settings(wc)["reconstruct"].get("order")),
        extra=map_extra_args,
        max_memory=max_memory_arg,
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d reconstruct {input.moments} --dataset {input.data} "
        "--points {input.centres} --maps-index {input.maps}/index.csv --out-dir {output} {params.order} {params.extra} "
        "--threads {threads} {params.max_memory} > {log} 2>&1"


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
    group:
        "finish_{dataset}"
    conda:
        conda_env()
    threads: rule_threads("paths")
    resources:
        **rule_resources_for("paths", "data"),
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
    group:
        transform_group("reconstruct")
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
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d reconstruct {input.moments} --dataset {input.data} "
        "--points {input.paths} --out-dir {output} {params.order} {params.extra} --threads {threads} {params.max_memory} > {log} 2>&1"

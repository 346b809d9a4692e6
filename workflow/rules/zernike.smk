# The Zernike stages: basis (shared cache), decompose, invariants, reconstruct.


rule basis:
    """Build (or find) the basis for this geometry and order in the shared cache."""
    input:
        data="results/{dataset}/preprocessed.npz",
    output:
        "results/{dataset}/basis.json",
    log:
        "logs/{dataset}/basis.log",
    benchmark:
        "logs/{dataset}/basis.benchmark.tsv"
    group:
        "prepare_{dataset}"
    conda:
        conda_env()
    threads: rule_threads("basis")
    resources:
        **rule_resources_for("basis", "data"),
    params:
        order=order_args,
        geometry=geometry_args,
        cache=lambda wc: shlex.quote(str(config["basis_cache"])),
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d basis {input.data} {params.order} {params.geometry} "
        "--cache {params.cache} --out {output} > {log} 2>&1"


rule decompose:
    """Zernike moments of the base map and every 3DVA component."""
    input:
        unpack(basis_input),
        data="results/{dataset}/preprocessed.npz",
    output:
        "results/{dataset}/moments.npz",
    log:
        "logs/{dataset}/decompose.log",
    benchmark:
        "logs/{dataset}/decompose.benchmark.tsv"
    group:
        transform_group("decompose")
    conda:
        conda_env(gpu_capable=True)
    threads: rule_threads("decompose")
    resources:
        **rule_resources_for("decompose", "data"),
    params:
        order=order_args,
        geometry=geometry_args,
        basis=lambda wc, input: opt("--basis", input.get("basis")),
        max_memory=max_memory_arg,
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d decompose {input.data} {params.order} {params.geometry} {params.basis} "
        "--threads {threads} {params.max_memory} --out {output} > {log} 2>&1"


rule invariants:
    """Rotation invariants of every volume, and of every particle of a 3DVA job."""
    input:
        moments="results/{dataset}/moments.npz",
        data="results/{dataset}/preprocessed.npz",
    output:
        table="results/{dataset}/invariants.csv",
        # the store's root metadata stands for the store: a directory() output would get
        # Snakemake's .snakemake_timestamp file inside, which zarr then warns about
        particles="results/{dataset}/particle_invariants.zarr/zarr.json",
    log:
        "logs/{dataset}/invariants.log",
    benchmark:
        "logs/{dataset}/invariants.benchmark.tsv"
    wildcard_constraints:
        dataset=_names_regex(PARTICLE_DATASETS),
    group:
        "finish_{dataset}"
    conda:
        conda_env()
    threads: rule_threads("invariants")
    resources:
        **rule_resources_for("invariants", "data"),
    params:
        particles=invariants_particle_args,
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d invariants {input.moments} --out {output.table} {params.particles} > {log} 2>&1"


# the same for a single map (no particles, so no per-particle output)
use rule invariants as invariants_single with:
    output:
        table="results/{dataset}/invariants.csv",
    wildcard_constraints:
        dataset=_names_regex(MAP_DATASETS),


rule reconstruct:
    """Maps rebuilt from the moments: the base map, series along each component,
    k-means centres, single particles, given latent points (maps/index.csv lists them).
    """
    input:
        moments="results/{dataset}/moments.npz",
        data="results/{dataset}/preprocessed.npz",
    output:
        directory("results/{dataset}/maps"),
    log:
        "logs/{dataset}/reconstruct.log",
    benchmark:
        "logs/{dataset}/reconstruct.benchmark.tsv"
    group:
        transform_group("reconstruct")
    conda:
        conda_env(gpu_capable=True)
    threads: rule_threads("reconstruct")
    resources:
        **rule_resources_for("reconstruct", "data"),
    params:
        args=reconstruct_args,
        max_memory=max_memory_arg,
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d reconstruct {input.moments} --dataset {input.data} --out-dir {output} "
        "{params.args} --threads {threads} {params.max_memory} > {log} 2>&1"

# Quality control: FSC of the reconstruction against the input, map slices, invariant
# plots. Every figure is in the report under its dataset; the landing page
# (report/workflow.rst) shows each dataset's key figures and resolution table.


rule qc:
    """FSC between each map and its reconstruction; map slices, invariant and per-particle PCA plots."""
    input:
        unpack(qc_inputs),
    output:
        fsc_table=qc_report("fsc.csv", "fsc_table.rst", "FSC table"),
        fsc_resolution=qc_report(
            "fsc_resolution.csv", "fsc_resolution.rst", "FSC resolution"
        ),
        fsc=qc_report("fsc.png", "fsc.rst", "1. FSC against the expansion"),
        maps=qc_report("maps.png", "maps.rst", "2. map slices"),
        invariants=qc_report("invariants.png", "invariants.rst", "3. invariants"),
        summary="results/{dataset}/qc/summary.html",
        pca=qc_report(
            "particle_invariants_pca.png",
            "particle_invariants_pca.rst",
            "4. particle invariants PCA",
        ),
        series=qc_report("series_maps.png", "series_maps.rst", "5. series maps"),
    log:
        "logs/{dataset}/qc.log",
    benchmark:
        "logs/{dataset}/qc.benchmark.tsv"
    wildcard_constraints:
        dataset=_names_regex(PARTICLE_DATASETS),
    group:
        "finish_{dataset}"
    conda:
        conda_env()
    threads: rule_threads("qc")
    resources:
        **rule_resources_for("qc", "data"),
    params:
        particles=qc_particle_args,
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d qc --dataset {input.data} --moments {input.moments} {params.particles} "
        "--name {wildcards.dataset} --out-dir results/{wildcards.dataset}/qc --threads {threads} > {log} 2>&1"


use rule qc as qc_single with:
    output:
        fsc_table=qc_report("fsc.csv", "fsc_table.rst", "FSC table"),
        fsc_resolution=qc_report(
            "fsc_resolution.csv", "fsc_resolution.rst", "FSC resolution"
        ),
        fsc=qc_report("fsc.png", "fsc.rst", "1. FSC against the expansion"),
        maps=qc_report("maps.png", "maps.rst", "2. map slices"),
        invariants=qc_report("invariants.png", "invariants.rst", "3. invariants"),
        summary="results/{dataset}/qc/summary.html",
    log:
        "logs/{dataset}/qc.log",
    benchmark:
        "logs/{dataset}/qc.benchmark.tsv"
    wildcard_constraints:
        dataset=_names_regex(MAP_DATASETS),

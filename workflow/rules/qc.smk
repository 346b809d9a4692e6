# Quality control: FSC of the reconstruction against the input, invariant plots.


rule qc:
    """FSC between each map and its reconstruction; invariant and per-particle PCA plots."""
    input:
        unpack(qc_inputs),
    output:
        fsc_table=report(
            "results/{dataset}/qc/fsc.csv",
            caption="../report/fsc_table.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "FSC table"},
        ),
        fsc_resolution=report(
            "results/{dataset}/qc/fsc_resolution.csv",
            caption="../report/fsc_resolution.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "FSC resolution"},
        ),
        fsc=report(
            "results/{dataset}/qc/fsc.png",
            caption="../report/fsc.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "FSC"},
        ),
        invariants=report(
            "results/{dataset}/qc/invariants.png",
            caption="../report/invariants.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "invariants"},
        ),
        pca=report(
            "results/{dataset}/qc/particle_invariants_pca.png",
            caption="../report/particle_invariants_pca.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "particle invariants PCA"},
        ),
    wildcard_constraints:
        dataset=_names_regex(PARTICLE_DATASETS),
    params:
        particles=qc_particle_args,
    log:
        "logs/{dataset}/qc.log",
    benchmark:
        "logs/{dataset}/qc.benchmark.tsv"
    threads: rule_threads("qc")
    resources:
        **rule_resources_for("qc", "data"),
    conda:
        conda_env()
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d qc --dataset {input.data} --moments {input.moments} {params.particles} "
        "--out-dir results/{wildcards.dataset}/qc --threads {threads} > {log} 2>&1"


use rule qc as qc_single with:
    output:
        fsc_table=report(
            "results/{dataset}/qc/fsc.csv",
            caption="../report/fsc_table.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "FSC table"},
        ),
        fsc_resolution=report(
            "results/{dataset}/qc/fsc_resolution.csv",
            caption="../report/fsc_resolution.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "FSC resolution"},
        ),
        fsc=report(
            "results/{dataset}/qc/fsc.png",
            caption="../report/fsc.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "FSC"},
        ),
        invariants=report(
            "results/{dataset}/qc/invariants.png",
            caption="../report/invariants.rst",
            category="Quality control",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "invariants"},
        ),
    wildcard_constraints:
        dataset=_names_regex(MAP_DATASETS),
    log:
        "logs/{dataset}/qc.log",
    benchmark:
        "logs/{dataset}/qc.benchmark.tsv"

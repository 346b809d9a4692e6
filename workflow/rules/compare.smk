# Comparisons of datasets (config `compare:`): one `zernike3d compare` job per named
# comparison, reading each member's results folder; the first member is the reference.


include: "compare_common.smk"


rule compare:
    """Place each member in the first's frame (from the jobs' families of maps), compare
    volumes and latent spaces, build the joint landscape of all their particles and each
    job's free energy on it."""
    input:
        lambda wc: jobs.compare_inputs(COMPARISONS[wc.comparison]),
    output:
        **{
            figure: report(
                f"results/compare/{{comparison}}/{figure}.png",
                caption=f"../report/compare_{figure}.rst",
                category="Comparison",
                subcategory="{comparison}",
                labels={"comparison": "{comparison}", "figure": label},
            )
            for figure, label in jobs.COMPARE_FIGURES.items()
        },
        landscape="results/compare/{comparison}/landscape.npz",
        summary="results/compare/{comparison}/summary.html",
        free_energy=report(
            "results/compare/{comparison}/free_energy.csv",
            caption="../report/compare_free_energy.rst",
            category="Comparison",
            subcategory="{comparison}",
            labels={
                "comparison": "{comparison}",
                "figure": "free energy table",
            },
        ),
        populations=report(
            "results/compare/{comparison}/cluster_populations.csv",
            caption="../report/compare_cluster_populations.rst",
            category="Comparison",
            subcategory="{comparison}",
            labels={
                "comparison": "{comparison}",
                "figure": "cluster populations table",
            },
        ),
    log:
        "logs/compare/{comparison}.log",
    benchmark:
        "logs/compare/{comparison}.benchmark.tsv"
    conda:
        str(REPO / "envs" / "zernike3d-cpu.yaml")
    threads: compare_threads
    resources:
        mem_mb=compare_resources("mem_mb"),
        runtime=compare_resources("runtime"),
    params:
        folders=lambda wc: jobs.compare_folders(COMPARISONS[wc.comparison]),
        options=lambda wc: opt("--temperature", config["temperature"]),
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d compare {params.folders} "
        "--out-dir results/compare/{wildcards.comparison} {params.options} > {log} 2>&1"

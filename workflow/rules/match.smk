# Scoring the particles of a dataset against molecular models or maps (datasets.<name>.match,
# see config/README.md): `zernike3d match` into results/<dataset>/match/.


rule match:
    """Every particle's correlation with each query fitted into the job's frame, the best
    state's map and the fitted query, and the particles of each query for cryoSPARC."""
    input:
        unpack(match_inputs),
    output:
        scores="results/{dataset}/match/scores.csv",
        record="results/{dataset}/match/match.json",
        queries=report(
            "results/{dataset}/match/queries.csv",
            caption="../report/match_queries.rst",
            category="Matching models",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "queries: fits and best scores"},
        ),
        plot=report(
            "results/{dataset}/match/scores.png",
            caption="../report/match_scores.rst",
            category="Matching models",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "scores over the latent space"},
        ),
    log:
        "logs/{dataset}/match.log",
    benchmark:
        "logs/{dataset}/match.benchmark.tsv"
    wildcard_constraints:
        dataset=_names_regex(match_datasets()),
    conda:
        conda_env()
    threads: rule_threads("match")
    resources:
        **rule_resources_for("match", "data"),
    params:
        args=match_args,
        out_dir="results/{dataset}/match",
    shell:
        "NUMBA_NUM_THREADS={threads} OMP_NUM_THREADS={threads} zernike3d match results/{wildcards.dataset} "
        "{params.args} --threads {threads} --out-dir {params.out_dir} > {log} 2>&1"

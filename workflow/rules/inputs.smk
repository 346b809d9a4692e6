# Inputs: (an example job), import into a dataset bundle, preprocess (crop/bin/mask).


# a second's work with a few MB: on SLURM, not worth a job of its own
localrules:
    example_job,


rule example_job:
    """A small synthetic cryoSPARC 3DVA job (for trying the workflow, and for .test/)."""
    input:
        lambda wc: DATASETS[wc.dataset]["example"].get("particles_cs") or [],
    output:
        directory("results/{dataset}/example_job"),
    log:
        "logs/{dataset}/example_job.log",
    benchmark:
        "logs/{dataset}/example_job.benchmark.tsv"
    conda:
        conda_env()
    threads: rule_threads("example")
    resources:
        **rule_resources_for("example", None),
    params:
        args=of_dataset(jobs.example_args),
    shell:
        "zernike3d example --job-dir {output} {params.args} " "> {log} 2>&1"


rule import_data:
    """Read the maps (and 3DVA particles' latents) into one dataset bundle."""
    input:
        unpack(import_inputs),
    output:
        "results/{dataset}/dataset.npz",
    log:
        "logs/{dataset}/import_data.log",
    benchmark:
        "logs/{dataset}/import_data.benchmark.tsv"
    group:
        "prepare_{dataset}"
    conda:
        conda_env()
    threads: rule_threads("import")
    resources:
        **rule_resources_for("import", "source"),
    params:
        args=import_args,
    shell:
        "zernike3d import {params.args} --out {output} > {log} 2>&1"


rule preprocess:
    """Crop, Fourier-bin and mask the base map and every component alike."""
    input:
        unpack(preprocess_extra_inputs),
        dataset="results/{dataset}/dataset.npz",
    output:
        "results/{dataset}/preprocessed.npz",
    log:
        "logs/{dataset}/preprocess.log",
    benchmark:
        "logs/{dataset}/preprocess.benchmark.tsv"
    group:
        "prepare_{dataset}"
    conda:
        conda_env()
    threads: rule_threads("preprocess")
    resources:
        **rule_resources_for("preprocess", "dataset"),
    params:
        args=preprocess_args,
    shell:
        "zernike3d preprocess {input.dataset} --out {output} {params.args} > {log} 2>&1"

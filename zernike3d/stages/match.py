"""Score every particle of a 3D Variability job against molecular models or maps, in any frame.

RESULTS_DIR is a dataset's results folder of the workflow (results/<name>/: its bundle
preprocessed.npz, or dataset.npz, and moments.npz). Each --query is a molecular model (PDB
or mmCIF, read with gemmi: a Gaussian per atom on the job's voxel grid, as ChimeraX's
molmap makes a map, of standard deviation 0.225 × --model-resolution, by default the
resolution the job's order reaches; atoms weighted by their electrons, see
zernike3d/io/structure.py) or a map (MRC of any box and voxel size, resampled onto the
job's grid). Each query is fitted into the job's frame (rotation, shift and hand, as
`zernike3d align`, at --fit-order), alternating with the latent point it matches best
(not onto the consensus map alone: see zernike3d/analysis/match.py), then every
particle's map base + sum_k z_k component_k is correlated with it over the ball at the
job's order (Pearson, exact from the moments, O(K^2) a particle). A query whose mirror
image fits clearly better is flagged (hand "mirrored", a warning); when --fit-order cannot
tell the hand, the last fit is made again at the job's order.

Into --out-dir (written whole, replacing only an earlier output of this stage):

  scores.csv        uid, one column per query (named by its file's stem) with the
                    particle's score (correlation, higher is better), and best: the query
                    that scores highest
  queries.csv       query, kind, hand, fit_correlation, mirror_correlation, best_uid,
                    best_score, best_point_score, assigned, assigned_fraction
  match.json        per query: the fit (3x4 matrix from the query's frame to the job's,
                    as `align` writes it, with hand, correlations and a ChimeraX command),
                    the best particle (uid, latents, score), the latent point of highest
                    score and the scores' quantiles
  STEM.mrc          the job's map (its own maps combined) at that best latent point
  STEM_fitted.mrc   the query in the job's frame, on the job's grid
  STEM.py           ChimeraX script: both maps, and a model query placed on them
  scores.png        each query's score over the pairs of latent components, best point marked
  subsets/STEM.cs   with --subsets: the particles assigned to each query (highest score;
  subsets/STEM.csg  --min-score, --top leave the ambiguous out), as `cluster` writes subsets

A results folder of a single map (no particles) gets the map itself scored (one row, uid
"map"), and says so.
"""

import csv
import json
import time
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.match_files import check_stems
from zernike3d.stages import common

#: default order of the fits (as `compare`): the scores use the job's full order
FIT_ORDER = 20
#: suffixes of map queries (before an optional .gz, which mrcfile reads)
MAP_SUFFIXES = (".mrc", ".map", ".mrcs")


def add_arguments(parser):
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="a dataset's results folder (results/<name>)")
    parser.add_argument("--query", nargs="+", action="extend", required=True, metavar="Q",
                        help="molecular model (.pdb, .cif, .ent, .mmcif) or map (.mrc, .map), optionally .gz")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the scores, fits, maps and figure")
    parser.add_argument("--order", type=int, default=None, help="order of the scores (default: all stored)")
    parser.add_argument("--fit-order", type=int, default=FIT_ORDER, help="order of the fits (at most --order)")
    parser.add_argument("--model-resolution", type=common.at_least(float, 0, strictly=True), default=None, metavar="Å",
                        help="resolution of a model's density (default: what the job's order reaches in its ball)")
    common.add_subset_arguments(parser, "query")
    parser.add_argument("--min-score", type=float, default=None, help="assign no particle whose best score is lower")
    parser.add_argument("--top", type=float, default=None, metavar="FRACTION",
                        help="assign only this share of each query's particles, the highest scoring")
    common.add_threads_argument(parser)


def read_query(path, stem, geometry, sigma):
    """The :class:`~zernike3d.analysis.match.Query` of one file; a model whose atoms do not
    fit in the job's ball (centred on the sphere that encloses them) is refused, naming how
    many lie outside."""
    from zernike3d.analysis.match import Query
    from zernike3d.io.mrc import read_map
    from zernike3d.io.structure import is_model_path, read_model

    if is_model_path(path):
        query = Query.from_model(stem, path, read_model(path), sigma)
        outside, total, farthest = query.atoms_outside(query.centring(geometry), geometry)
        if outside:
            raise InputError(path, f"the model is larger than the job's ball: {outside} of {total} atoms "
                             f"({100 * outside / total:.1f}%) lie outside its radius of {geometry.radius:g} Å with the "
                             f"model centred in it (the farthest {farthest:.1f} Å from the centre); trim the model, or "
                             "decompose the job in a larger ball (--radius)")
        return query
    name = Path(path).name.lower()
    if (name[:-3] if name.endswith(".gz") else name).endswith(MAP_SUFFIXES):  # EMDB serves maps as .map.gz
        return Query.from_map(stem, path, read_map(path))
    raise InputError(path, "not a molecular model (.pdb, .ent, .cif, .mmcif) or a map (.mrc, .map), optionally .gz")


def run(args):
    from zernike3d.analysis.match import LatentRegion, fit_queries, score_particles
    from zernike3d.analysis.results_folder import read_job_files
    from zernike3d.io.atomic import atomic_path, folder_kind
    from zernike3d.io.cryosparc import passthrough_path
    from zernike3d.io.cryosparc_export import source_particles_cs
    from zernike3d.maths.density import MOLMAP_SIGMA_FACTOR
    from zernike3d.maths.resolution import expected_resolution, nyquist

    began = time.perf_counter()
    if args.top is not None and not 0 < args.top <= 1:
        raise InputError("--top", f"a fraction in (0, 1], got {args.top:g}")
    if args.min_score is not None and not -1 <= args.min_score <= 1:
        raise InputError("--min-score", f"a correlation in [-1, 1], got {args.min_score:g}")
    stems = check_stems(args.query)
    files = read_job_files(args.results)
    dataset, bundle, moments, moments_path = files.dataset, files.bundle, files.moments, files.moments_path
    single = dataset.n_components == 0
    if single and args.subsets:
        raise InputError(args.results, "is a single map: it has no particles to write as subsets")
    particles_cs = None
    if args.subsets:
        particles_cs = args.particles_cs or source_particles_cs(dataset.provenance)
    common.check_outputs([bundle, moments_path, *args.query, particles_cs, particles_cs and passthrough_path(particles_cs)],
                         [(args.out_dir, folder_kind("match"))])
    order = moments.order if args.order is None else args.order
    if not 1 <= order <= moments.order:
        raise InputError("--order", f"must be between 1 and the stored order {moments.order}")
    if not 1 <= args.fit_order:
        raise InputError("--fit-order", f"must be at least 1, got {args.fit_order}")
    job = moments.truncate(order)
    geometry = job.geometry
    resolution = args.model_resolution or max(expected_resolution(order, geometry.radius), nyquist(geometry.voxel_size))
    queries = [read_query(path, stem, geometry, MOLMAP_SIGMA_FACTOR * resolution) for path, stem in zip(args.query, stems)]
    if single:
        print(f"{args.results} is a single map (no particles): scoring the map itself against each query")
    table = _subset_table(args, particles_cs, dataset, bundle) if args.subsets else None

    started = time.perf_counter()
    region = LatentRegion.of(dataset.latents.astype(np.float64)) if not single else None
    fits = fit_queries(queries, job, dataset.latents, region, min(args.fit_order, order), args.threads)
    fitted = time.perf_counter()
    match = score_particles(job, dataset.latents, region, fits, args.min_score, args.top)
    with atomic_path(args.out_dir, folder_kind("match")) as out:
        _write_outputs(out, args, dataset, job, queries, fits, match, table, resolution)
    done = time.perf_counter()
    for stem, fit, best in zip(stems, fits, match.best_scores):
        print(f"{stem}: fit correlation {fit.alignment.correlation:.4f}, hand {fit.alignment.hand}; best score {best:.4f}")
    print(f"wrote {args.out_dir}: {len(dataset.uid) or 1} {'map' if single else 'particles'} scored against "
          f"{len(queries)} queries at order {order}; reading {started - began:.1f} s, fits {fitted - started:.1f} s, "
          f"scores and outputs {done - fitted:.1f} s")
    return 0


def _subset_table(args, particles_cs, dataset, bundle):
    from zernike3d.io.cryosparc_export import particle_table, rows_of_uids

    table, fmt, dtype = particle_table(particles_cs, args.particles_cs is not None, bundle, args.latents_only_subsets)
    return table, fmt, dtype, rows_of_uids(table["uid"], dataset.uid, particles_cs)


def _write_outputs(out, args, dataset, job, queries, fits, match, table, resolution):
    from zernike3d.analysis.latent_plots import plot_latent_scores
    from zernike3d.analysis.match import quantiles
    from zernike3d.io import chimerax
    from zernike3d.io.cryosparc_export import write_subset
    from zernike3d.io.match_files import write_scores_csv
    from zernike3d.io.mrc import write_map
    from zernike3d.analysis.latents import LatentPoint, mapspace_maps
    from zernike3d.maths.density import MOLMAP_SIGMA_FACTOR

    stems = [q.stem for q in queries]
    scores, labels = match.scores, match.labels
    single = dataset.n_components == 0
    uid = ["map"] if single else dataset.uid.tolist()
    write_scores_csv(out / "scores.csv", uid, stems, scores)
    record = {
        "results": str(Path(args.results).resolve()), "order": job.order, "fit_order": min(args.fit_order, job.order),
        "particles": len(dataset.uid), "components": dataset.n_components,
        "score": "Pearson correlation over the job's ball of the particle's map (base + sum_k z_k component_k) with "
                 "the fitted query, ball means removed, from the moments at the job's order",
        "convention": "matrix: 3x4 [A | t], (x, y, z) in Å from the query's frame (a model's coordinates, a map's "
                      "positions from the centre of its voxel [0,0,0]) to the job's (from the centre of its voxel "
                      "[0,0,0]); A has determinant -1 for a mirrored fit; MRC origins not included (the ChimeraX "
                      "command includes them)",
        "model_density": f"a Gaussian per atom (weight: electrons x occupancy, waters left out) of standard deviation "
                         f"{MOLMAP_SIGMA_FACTOR * resolution:.4g} Å = 0.225 x {resolution:.4g} Å (molmap)",
        "queries": {},
    }
    rows = []
    for q, (query, fit) in enumerate(zip(queries, fits)):
        alignment = fit.alignment
        point = LatentPoint(query.stem, "latent", match.points[q])
        state = next(mapspace_maps(dataset, [point]))[1]
        write_map(out / f"{query.stem}.mrc", state, dataset.voxel_size, dataset.origin)
        write_map(out / f"{query.stem}_fitted.mrc", fit.density, dataset.voxel_size, dataset.origin)
        placement = alignment.chimerax_command(model="#3")
        model = query.kind == "model"
        (out / f"{query.stem}.py").write_text(chimerax.match_script(
            f"{query.stem}.py", f"{query.stem}.mrc", f"{query.stem}_fitted.mrc", chimerax.contour_level(state),
            chimerax.contour_level(fit.density), f"{query.stem} fitted into the job's frame, written by zernike3d match",
            str(Path(query.path).resolve()) if model else None, alignment.chimerax_matrix if model else None))
        assigned = int(np.sum(labels == q))
        row = match.best_rows[q]
        record["queries"][query.stem] = {
            "query": str(Path(query.path).resolve()), "kind": query.kind,
            "matrix": np.round(fit.matrix, 10).tolist(), "hand": alignment.hand,
            "correlation": alignment.correlation, "mirror_correlation": alignment.mirror_correlation,
            "euler_zyz_deg": list(alignment.euler_zyz_deg), "fit_rounds": fit.rounds,
            "fitted_onto_latents": fit.state.tolist(), "chimerax": placement,
            "chimerax_note": f"open the job's map as #1, then the query file as #3 and run this command; or open {query.stem}.py",
            "best_particle": {"uid": uid[row], "latents": latents_of(dataset, row), "score": match.best_scores[q]},
            "best_point": {"latents": match.points[q].tolist(), "score": match.point_scores[q]},
            "quantiles": quantiles(scores[:, q]),
            "assigned": assigned, "assigned_fraction": assigned / len(labels),
        }
        rows.append([query.stem, query.kind, alignment.hand, f"{alignment.correlation:.6f}",
                     f"{alignment.mirror_correlation:.6f}", uid[row], f"{match.best_scores[q]:.6f}",
                     f"{match.point_scores[q]:.6f}", assigned, f"{assigned / len(labels):.6f}"])
        if table is not None and assigned:
            cs_table, fmt, dtype, table_rows = table
            write_subset(out / "subsets", query.stem, cs_table, fmt, np.sort(table_rows[labels == q]),
                         f"zernike3d match of {Path(args.results).name}: the particles that score highest for "
                         f"{Path(query.path).name}" + _assignment_note(args), dtype)
    with open(out / "queries.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["query", "kind", "hand", "fit_correlation", "mirror_correlation", "best_uid", "best_score",
                         "best_point_score", "assigned", "assigned_fraction"])
        writer.writerows(rows)
    with open(out / "match.json", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    plot_latent_scores(out / "scores.png", dataset.latents if not single else np.zeros((0, 0)), scores, stems,
                       list(match.points),
                       f"{Path(args.results).name}: {len(labels)} {'map' if single else 'particles'} scored at order {job.order}")


def latents_of(dataset, row):
    return dataset.latents[row].astype(np.float64).tolist() if dataset.n_components else []


def _assignment_note(args):
    notes = [f"score at least {args.min_score:g}" if args.min_score is not None else None,
             f"the top {args.top:g} of each query's" if args.top is not None else None]
    notes = [n for n in notes if n]
    return f" ({', '.join(notes)})" if notes else ""



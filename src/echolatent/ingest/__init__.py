"""Cohort ingestion (stage 1): from a cohort source to EchoLatent's cohort shards.

Three steps, each a Snakemake rule so that a 10,000-patient cohort runs as a handful of
shard jobs, never one job per patient:

1. :func:`~echolatent.ingest.plan.plan_cohort` lists the patients, checks the covariates, assigns each patient
   a split (train/val/test, by patient) and a shard.
2. :func:`~echolatent.ingest.shard.ingest_shard` streams the patients of one shard: reads, checks, resamples to
   the model grid and writes ``shard-{k}.h5``.
3. :func:`~echolatent.ingest.cohort.merge_cohort` joins the per-shard tables into ``patients.tsv``,
   ``sequences.tsv``, ``qc.tsv`` and ``provenance.json``.

Output contract (``results/cohort/``; later stages rely on it)
---------------------------------------------------------------
``patients.tsv``
    One row per ingested patient: ``patient_id``, covariates (``group``, ``age``, ``sex``,
    ``bsa``, ... as available), ``split``, ``shard``, ``n_sequences``.
``sequences.tsv``
    One row per (patient, view): ``patient_id, view, shard, cycle, n_frames, ed, es,
    height, width, spacing_h, spacing_w, model_spacing_h, model_spacing_w, frame_rate,
    has_image, image_quality, source_files``.
``shard-{k}.h5``
    Root attributes ``format="echolatent-cohort-shard"``, ``version``, ``shard``,
    ``image_size``. One group ``/{patient_id}/{view}`` per sequence with datasets
    ``mask_native`` (T, H, W) uint8, ``mask`` (T, S, S) uint8 (nearest),
    ``image`` (T, S, S) when the source has images (bilinear; uint8 stays uint8; native
    images stay in the source files, listed in ``sequences.tsv``),
    ``frame_pos`` (T,) float32 (0 at ED, 1 at ES; full cycles are periodic, falling
    back towards 0 before the next ED whatever the order of ED and ES; see
    :func:`~echolatent.ingest.shard.frame_positions`), and attributes ``spacing_native``
    and ``spacing`` (h, w mm; the model-grid spacing is the native one scaled by H/S and
    W/S), ``ed``, ``es``, ``cycle``, ``frame_rate`` (NaN when unknown). Chunked one frame per chunk, gzip-compressed.
``qc.tsv``
    Sequences skipped with ``qc.on_bad_sequence: skip``: ``patient_id, view, file,
    reason``; ``view`` is empty when the whole patient was skipped (e.g. an empty CAMUS
    patient folder). A patient whose every view was skipped is not in ``patients.tsv``
    but always has rows here.
``provenance.json``
    The configuration, package versions and the SHA-256 of every input file (an MHD's
    ``.raw`` included).
``truth/`` (synthetic cohorts only)
    ``shard-{k}.h5`` with the clean masks (same groups, ``mask_native``/``mask``) and the
    simulator's truth tables. Analysis stages never read it; evaluation stages do.

Patient ids are plain identifiers (:data:`echolatent.io.sources.IDENTIFIER_RULE`), as they
name HDF5 groups and files. Every file is written under a temporary name and renamed;
merging deletes the shards an earlier cohort with more shards left behind.

Modules
-------
:mod:`~.plan`    step 1: the split fractions, the split and the shard of every patient
:mod:`~.shard`   step 2: the records of one shard checked, resampled and written
:mod:`~.cohort`  step 3: the per-shard tables merged; all three steps in one process
                 (:func:`~echolatent.ingest.cohort.ingest_cohort`, for the CLI and tests)

The workflow's rules call them through :mod:`echolatent.stages.ingest`, which also opens
the cohort source (:func:`~echolatent.stages.ingest.open_source`).
"""

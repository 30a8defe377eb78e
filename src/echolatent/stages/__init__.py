"""One module per stage of the workflow: the functions its rules' scripts call.

Each ``workflow/scripts/*.py`` reads the ``snakemake`` object and calls one function of these
modules, so every rule can also be run (and tested) from Python; before anything else it calls
:func:`echolatent.stages.logs.log_to`, which sends the logging of the library (standard
:mod:`logging`, one logger per module) to the rule's log file. The functions here read the
rule's input files, call the logic (:mod:`echolatent.ingest`, :mod:`echolatent.shape`,
:mod:`echolatent.models`, :mod:`echolatent.temporal`,
:mod:`echolatent.stats`) and write the rule's output files.

Modules
-------
:mod:`~.ingest`    the cohort: simulated, manifested, planned, ingested per shard, merged
:mod:`~.shape`     anatomical criteria and shape attributes per shard; clinical indices
:mod:`~.train`     a VAE of the study trained on the cohort's train split
:mod:`~.encode`    latents and reconstructions per shard; reconstruction quality per model
:mod:`~.temporal`  temporal thresholds, detection, correction, NIfTI export, summary
:mod:`~.stats`     population statistics: analysis table, Table 1, adjusted group effects
:mod:`~.logs`      the rule's log file (logging, warnings, tracebacks)

Importing this package imports nothing else; no module here imports torch at import time
(the workflow imports :mod:`~.ingest` when it builds the DAG).
"""

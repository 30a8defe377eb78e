"""The paper's figures, drawn from saved results: pure functions from tables and arrays to figures.

Every function takes DataFrames and arrays (never file paths) and returns a
:class:`matplotlib.figure.Figure`; the stage functions of :mod:`echolatent.stages.figures` read
the result files, call them and save the figures. No module here imports Snakemake.

==================  ===========================================================================
Module              What it holds
==================  ===========================================================================
``style``           the one plotting style: colour-blind-safe palette (one colour per
                    structure), sizes and fonts for print, atomic PNG + PDF saving, masks as
                    contours over B-mode images, scale bars
``names``           display names with units of the result columns
``targets``         which figure files a study has (the ``figures`` target of the workflow)
``cohort``          flow chart of the cohort: planned, ingested, splits, analysed, exclusions
``models``          learning curves, reconstruction Dice, the study's models side by side
``latent_codes``    latent codes to decode (interpolations, traversals, prior samples) and PCA
``latent``          decoded interpolations, prior samples, attribute traversals, PCA scatter
``temporal``        one sequence before and after the temporal correction
``anatomy``         frames failing each anatomical criterion, per mask source
``forest``          forest plot of the standardised group effects
``table1``          Table 1 as a figure and as LaTeX
``curves``          attribute and latent curves over the normalised cycle, group bands, significant phases
``classification``  ROC curves: latent codes vs the clinical baseline vs both (AUC, DeLong)
``agreement``       identity and Bland-Altman plots of the clinical indices, method vs reference
``decoded``         decoded modes of variation, group-mean shapes, the group direction
==================  ===========================================================================

Figures are written under ``results/figures/`` (:mod:`echolatent.figures.targets`). To add a
figure: a function in the module of its stage (or a new module), drawn under
:func:`~echolatent.figures.style.styled` with the style's colours; a stage function in
:mod:`echolatent.stages.figures`; a rule, a caption and its entry in
:func:`~echolatent.figures.targets.figure_targets`.
"""

"""Shape measures of apical label maps: anatomical criteria, shape attributes, clinical indices.

Every measure takes label maps (:mod:`echolatent.labels`) and, where it needs physical
units, their pixel spacing (h, w) in mm.

========================  ==================================================================
Module                    What it holds
========================  ==================================================================
``criteria``              :func:`~echolatent.shape.criteria.anatomical_metrics` and
                          :func:`~echolatent.shape.criteria.criteria_validity`: the 12
                          anatomical criteria of Painchaud et al. (TMI 2020)
``criteria_definitions``  the criteria's names, definitions, valid ranges and the labels
                          each needs
``grid``                  the grid the criteria are measured on (0.3 mm isotropic or native)
                          and the small-object size
``criteria_batch``        the vectorised measurement of the criteria on a batch of maps
``erosion``               criterion 12, the erosion ratio before the myocardium splits
``mosaic``                many crops stacked in one image (tiles), per-tile sums
``bitmask``               packed-bit planes: shifts, bit counts, Euler numbers
``validation``            checks of label maps and spacings shared by every measure
``attributes``            :func:`~echolatent.shape.attributes.shape_attributes`: the seven
                          temporal attributes (TMI 2022) and the LA area
``clinical``              :func:`~echolatent.shape.clinical.clinical_indices`: LV volumes,
                          EF, LA volume, foreshortening
========================  ==================================================================
"""

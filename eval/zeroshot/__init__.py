"""Zero-shot spatial read-outs of GMAE (no training): depth layers, figure-ground masks and edges.

Common first step (``layers.predict_sorted``): encode the whole image with mask ratio 0, decode all k Gaussians
and sort them by camera depth, nearest first. Then:

* :mod:`eval.zeroshot.layers`        renders of the first K / a depth slice of the Gaussians, grey depth renders
                                     (``gmae eval layers``);
* :mod:`eval.zeroshot.figure_ground` front-layer alpha as a foreground map (``gmae eval figure-ground``);
* :mod:`eval.zeroshot.edges`         depth-group index maps and their discontinuities (``gmae eval edges``);
* :mod:`eval.zeroshot.figures`       the paper-style figures (PNG + PDF);
* :mod:`eval.zeroshot.common`        what the three commands share (checks, model loading, map files).
"""

"""Data, one module per format: ImageNet folders (``imagenet``), BSDS500 (``bsds``), saliency masks
(``saliency``), image reading and photo folders (``images``), the ImageNet transforms (``transforms``) and the
embedded tiny multi-task set written in all these formats (``tiny``). Import the names from those modules."""

"""textclf: fine-tune transformer text classifiers in a reproducible DVC pipeline.

The DVC stages live in `stages/` (one thin script each, see dvc.yaml); what they do lives here, one
module per concern. Importing this package is cheap: heavy libraries are imported by the modules that
need them.
"""

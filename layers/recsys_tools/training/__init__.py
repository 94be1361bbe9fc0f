"""Training-time code: data loading and cleaning, the TFRS model, evaluation and export.

The only users of tensorflow-recommenders and tf-keras; nothing in serving imports this package.
"""

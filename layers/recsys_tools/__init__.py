"""Tooling around the serving package: training, evaluation, benchmarks, the local server and template reading.

It may import ``recsys``; ``recsys`` (what a Lambda runs) never imports it, and the image does not ship it."""

"""The pieces of the `trust` analysis: explainers that can run on any copy of the model, map similarity,
cascading re-initialization, deletion/insertion curves and counterfactual edits."""

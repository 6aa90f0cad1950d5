"""Helpers of the `features` analysis: image optimization (`optim`), token search (`tokens`), attention
statistics (`attention`), reading units from module outputs (`units`) and the gallery figures (`gallery`)."""

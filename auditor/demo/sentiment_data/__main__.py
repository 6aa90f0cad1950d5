"""`python -m auditor.demo.sentiment_data` rewrites both CSV files of the demo sentiment dataset."""

from auditor.demo.sentiment_data import main

main()

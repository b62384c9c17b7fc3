"""Data quality: what makes training data good, checked before anything trains on it. The check registry
(checks.py, built from kinds.py over the pure measures in measures.py) defines each prompt/completion check
once; from it come validate's Great Expectations suites for generation data (generation_suites.py, on the GX
plumbing and classification suites of suites.py, read by people on review_page.py) and `tuneops prepare-data`'s
findings and fixes (prepare.py, reading files and counting tokens in reading.py), which the upload check runs
too. quality/ may import config/, io/, data/ and models/ only, never serve/, cli/, jobs/ or flows/.
"""

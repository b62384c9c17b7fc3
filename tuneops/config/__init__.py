"""The contracts every other part stands on: params.yaml's typed view (params.py), every path the pipeline reads
or writes (paths.py), the records stages pass to each other (records.py), the two kinds of failure and their exit
codes (errors.py), and how a stage or command runs (runner.py: logging, --help, one-line errors). It imports
nothing else of tuneops, so a change anywhere above never reruns a stage through it."""

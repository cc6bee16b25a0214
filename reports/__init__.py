"""The HTML report and paper tables, built from a results store alone (`python -m reports`)."""

REPORT_NAME = "report.html"  # the report's file in its out folder (--out, execution.report_dir)

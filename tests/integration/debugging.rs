//! Accuracy debugging end to end: verify modes, metrics, report.html, qairt suggest.

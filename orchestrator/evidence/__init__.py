"""Evidence: reading decision logs, re-judging each decision by the law of its instant, and
the per-jurisdiction report an auditor is handed (docs/evidence.md)."""

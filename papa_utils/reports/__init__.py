"""From a run's stored steps to what readers see: tables, statistics, verdicts, their rendering, figures and the
published pages. It reads step records and never computes a step."""

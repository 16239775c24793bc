"""Where a run's results go and how each was made: run folders, atomic files, step records and their provenance
(the code and invocation that computed them). Without torch; above ``settings``."""

"""The lesson of notebook 0: head statistics and types, interventions on attention, the exercises, their checks
and reference solutions."""

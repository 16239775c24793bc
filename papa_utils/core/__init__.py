"""The hooking core: device and precision, models, the PAPA layout and packed passes, constant attention and the
named hook points, the averages, the probes and the head scores. Every number a step stores is computed here."""

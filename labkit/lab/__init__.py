"""The lab layer: experiments, harnesses, tutorial systems and plots (not for applications)."""

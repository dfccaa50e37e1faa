"""The lab layer: experiments, harnesses, tutorial systems, plots; not for apps."""

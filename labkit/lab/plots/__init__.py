"""Plots for the notebooks: each module takes measured data and draws it."""

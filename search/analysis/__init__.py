"""What a study's figures say: Pareto fronts and hypervolume, intervals over seeds, parameter importances."""

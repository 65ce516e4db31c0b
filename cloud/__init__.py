"""colorgrid cloud controller: aggregation, estimation, control law, goal schedules."""

"""Grid carbon intensity, scenarios and estimates. Data files carry source and year."""

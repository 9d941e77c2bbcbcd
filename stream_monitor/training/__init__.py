"""Training a classifier with the NERO paper's recipe (`train`)."""

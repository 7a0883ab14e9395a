"""Data in: readers, counts in memory or on disk, input checks, preprocessing into the
encoders' inputs, genomic conventions, the gene-to-peak prior, and the simulator."""

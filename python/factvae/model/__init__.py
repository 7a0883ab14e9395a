"""The network and its objective (Eq. 1-13): the decoder's reference maths, the fused
likelihood that training runs, and the other loss terms."""

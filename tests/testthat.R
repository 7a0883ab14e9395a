library(testthat)
library(factvae)

test_check("factvae")

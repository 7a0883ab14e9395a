# Ctrl-C during training hands control back to R: the session lives on, the object is unchanged
# and Python can be called again. The training runs in a child R session so that the interrupt
# (SIGINT, what Ctrl-C sends) reaches it as it would reach a user's console.

test_that("an interrupt during RunFactVAE returns control to R, object unchanged", {
  skip_unless_full_tests()  # about 30 s of training in a child session
  # Known bug, not yet fixed: now and then (1 CI run in 5 or so, under load) the child R
  # session ends on the interrupt instead of returning control, so CI does not run this
  # until it is fixed; run it with FACTVAE_INTERRUPT_TESTS=true.
  skip_if_not(identical(Sys.getenv("FACTVAE_INTERRUPT_TESTS"), "true"),
              "flaky: the session sometimes ends on SIGINT; set FACTVAE_INTERRUPT_TESTS=true")
  skip_if_not_installed("callr")
  skip_if_no_core()
  session <- callr::r_session$new(wait_timeout = 60000)
  on.exit(session$close(), add = TRUE)
  session$run(function() {
    library(factvae)
    object <<- SimulateMultiome(n.cells = 200, seed = 3)
    before <<- object
    invisible(NULL)
  })
  session$call(function() {
    suppressWarnings(RunFactVAE(object, annotation = SeuratObject::Misc(object, "annotation"),
                                n.latent = 5, n.hvg = 100, max.epochs = 100000,
                                early.stopping = FALSE,
                                verbose = FALSE))
  })
  Sys.sleep(15)  # past Python start-up and preprocessing: inside the training loop
  expect_identical(session$get_state(), "busy")
  session$interrupt()
  expect_identical(session$poll_process(60000), "ready")
  outcome <- session$read()
  expect_false(is.null(outcome$error))
  expect_identical(session$get_state(), "idle")
  expect_true(session$run(function() identical(object, before)))
  expect_true(session$run(function() isTRUE(factvae::FactVAEAvailable())))
})

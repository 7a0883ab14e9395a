# Ctrl-C during training hands control back to R: the session lives on, the object is unchanged
# and Python can be called again. The fits run in a child R session so that the interrupt
# (SIGINT, what Ctrl-C sends) reaches it as it would reach a user's console.
#
# Before the fix, reticulate 1.28's SIGINT handler asked R, through an R function, whether the
# interrupt was pending; now and then R took the interrupt inside that call, its jump unwound
# Python's C frames as a C++ exception, and the next Python call crashed the session (segfault,
# every 61st interrupt in a session running the same code). Its C handler also broke an idle
# session's read of its input (the session quit), and an interrupt inside the first fit's import
# of torch._dynamo broke every later fit. factvae now installs a handler that reads R's flag
# without running R code and waits for imports to end (factvae.r_bridge).

child_session <- function() {
  session <- callr::r_session$new(wait_timeout = 60000)
  session$run(function() {
    library(factvae)
    object <<- SimulateMultiome(n.cells = 200, seed = 3)  # Python starts here
    before <<- object
    invisible(NULL)
  })
  session
}

test_that("an interrupt 5, 15, 30 or 60 s into RunFactVAE returns to the prompt, object unchanged", {
  skip_unless_full_tests()  # 2-4 minutes in a child session
  skip_if_not_installed("callr")
  skip_if_no_core()
  session <- child_session()
  on.exit(session$close(), add = TRUE)
  for (delay in c(5, 15, 30, 60)) {
    label <- sprintf("interrupt %g s into the fit", delay)
    session$call(function() {
      suppressWarnings(RunFactVAE(object, annotation = SeuratObject::Misc(object, "annotation"),
                                  n.latent = 5, n.hvg = 100, max.epochs = 100000,
                                  early.stopping = FALSE, verbose = FALSE))
    })
    Sys.sleep(delay)
    expect_identical(session$get_state(), "busy", label = label)
    session$interrupt()
    sent <- Sys.time()
    expect_identical(session$poll_process(60000), "ready", label = label)
    took <- as.numeric(Sys.time() - sent, units = "secs")
    # In training: a step or two, even on a loaded machine. Before it (5 s) a preprocessing
    # call into C, or an import, runs to its end first (22 s seen on two cores at load 12).
    expect_lt(took, if (delay < 15) 60 else 15, label = label)
    outcome <- session$read()
    expect_false(is.null(outcome$error), label = label)
    if (delay >= 15) {  # in the training loop by then: the message says where it stopped
      expect_match(conditionMessage(outcome$error$parent), "Training interrupted during epoch",
                   label = label)
    }
    expect_identical(session$get_state(), "idle", label = label)
    expect_true(session$run(function() identical(object, before)), label = label)
    expect_true(session$run(function() isTRUE(factvae::FactVAEAvailable())), label = label)
  }
  # Python still computes after four interrupts (the crash came at the next Python call)
  expect_equal(session$run(function() ncol(factvae::SimulateMultiome(n.cells = 50))), 50)
  # An interrupt while the session waits for a command broke R's read of its input, which R
  # took for the end of it and quit (status 0); now the interrupt lands on the next command
  session$interrupt()
  Sys.sleep(1)
  expect_true(session$is_alive())
  try(session$run(function() NULL), silent = TRUE)
  expect_equal(session$run(function() ncol(factvae::SimulateMultiome(n.cells = 50))), 50)
})

test_that("Python's SIGINT handler in the session is factvae's, which never calls R", {
  skip_if_no_core()
  handler <- reticulate::import("signal")$getsignal(2L)
  expect_match(reticulate::py_to_r(reticulate::py_get_attr(handler, "__qualname__")),
               "_r_interrupt_handler")
})

test_that("a stopped fit is an error that is also an interrupt and says where it stopped", {
  skip_if_no_core()
  stop_fit <- function() {
    .py_call(reticulate::py_run_string(paste(
      "from factvae.errors import TrainingInterrupted",
      "from factvae.train import interrupts",
      "interrupts.report('Training interrupted during epoch 3.')",
      "raise TrainingInterrupted('Training interrupted during epoch 3.', last_good_epoch=2)",
      sep = "\n")))
  }
  expect_error(stop_fit(), "Training interrupted during epoch 3.*unchanged",
               class = "factvae_interrupt")
  expect_identical(tryCatch(stop_fit(), interrupt = function(e) "interrupt"), "interrupt")
  expect_null(.factvae_core()$bridge$take_interrupt_report())  # taken once
})
